package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/memlimit"
	"github.com/xen-operator/xen-operator/test/controlplane"
	"github.com/xen-operator/xen-operator/test/harness"
)

// scaleSettings turns the settings into the scale mode's: simulated
// operations ten times shorter and a higher per-pool cap, so that N = 10000
// runs in minutes on a 2-core machine and the operator's own cost (CPU,
// memory, API requests) dominates. Flags the user set win.
func scaleSettings(s *Settings, set map[string]bool) {
	s.Scale = true
	for _, d := range []struct {
		flag string
		v    *float64
	}{{"clone", &s.CloneMS}, {"provision", &s.ProvisionMS}, {"start", &s.StartMS}, {"shutdown", &s.ShutdownMS}, {"boot-delay", &s.BootDelayMS}} {
		if !set[d.flag] {
			*d.v /= 10
		}
	}
	if !set["concurrency"] {
		s.Concurrency = 64
	}
	if !set["reconciles"] {
		s.Reconciles = 64
	}
	if !set["steady"] {
		s.SteadySeconds = 20
	}
	if !set["cloud-init"] {
		s.CloudInitCount = 100
	}
}

// tracker follows the XenVMs through a watch (an informer): listing ten
// thousand objects four times a second would cost the API server more than
// the operator does.
type tracker struct {
	mu      sync.Mutex
	running map[string]bool
	// first is when a name with a prefix was first seen Running and Ready.
	first map[string]time.Time
}

func startTracker(ctx context.Context, cfg *rest.Config, k8s client.Client, ns string) (*tracker, error) {
	c, err := crcache.New(cfg, crcache.Options{Scheme: k8s.Scheme(), DefaultTransform: crcache.TransformStripManagedFields(),
		DefaultNamespaces: map[string]crcache.Config{ns: {}}})
	if err != nil {
		return nil, err
	}
	inf, err := c.GetInformer(ctx, &virtv1alpha1.XenVM{})
	if err != nil {
		return nil, err
	}
	t := &tracker{running: map[string]bool{}, first: map[string]time.Time{}}
	set := func(o any) {
		vm, ok := o.(*virtv1alpha1.XenVM)
		if !ok {
			return
		}
		up := vm.Status.PowerState == virtv1alpha1.PowerStateRunning &&
			meta.IsStatusConditionTrue(vm.Status.Conditions, virtv1alpha1.ConditionReady)
		t.mu.Lock()
		defer t.mu.Unlock()
		t.running[vm.Name] = up
		if p, _, _ := strings.Cut(vm.Name, "-"); up && t.first[p].IsZero() {
			t.first[p] = time.Now()
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, o any) { set(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if vm, ok := o.(*virtv1alpha1.XenVM); ok {
				t.mu.Lock()
				delete(t.running, vm.Name)
				t.mu.Unlock()
			}
		},
	}); err != nil {
		return nil, err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("the XenVM informer did not sync")
	}
	return t, nil
}

// Running counts the XenVMs named prefix-* that are Running and Ready.
func (t *tracker) Running(prefix string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for name, up := range t.running {
		if up && strings.HasPrefix(name, prefix+"-") {
			n++
		}
	}
	return n
}

// Len counts the XenVMs.
func (t *tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.running)
}

// First is when the first XenVM named prefix-* was Running and Ready.
func (t *tracker) First(prefix string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first[prefix]
}

// cpuSeconds reads processes' CPU time from /proc, summed.
func cpuSeconds(pids ...int) float64 {
	total := 0.0
	for _, pid := range pids {
		_, cpu := procUsage(pid)
		total += cpu
	}
	return total
}

// controlPlanePids are this program's kube-apiserver and etcd children.
func controlPlanePids() []int {
	dirs, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, f, ok := procStat(pid)
		if ok && (comm == "kube-apiserver" || comm == "etcd") && len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// startControlPlane starts a local control plane with the CRDs and returns
// it with a client; with admission, the admission policy as the chart
// installs it: XenVMs are labelled with their XenHost (and get their
// finalizer) at admission, not by the manager (one more PATCH per XenVM).
func startControlPlane(ctx context.Context, kubeconfig string, admission bool) (*controlplane.ControlPlane, client.Client, error) {
	cp, err := controlplane.Start(controlplane.Options{CRDDirectory: "config/crd/bases", KubeconfigPath: kubeconfig})
	if err != nil {
		return nil, nil, err
	}
	k8s, err := harness.NewClient(cp.Config)
	if err == nil && admission {
		err = harness.InstallAdmissionPolicy(ctx, k8s, "config/admission/policy.yaml")
	}
	if err != nil {
		return nil, nil, errors.Join(err, cp.Stop())
	}
	return cp, k8s, nil
}

// applyXenVMs creates the n XenVMs of a run in ns, 16 clients at once.
func applyXenVMs(ctx context.Context, k8s client.Client, ns string, n int) error {
	return harness.Parallel(n, 16, func(i int) error {
		return k8s.Create(ctx, &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("vm-%04d", i)},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "bench"}, Template: "Debian Bookworm 12",
				NetworkInterfaces: []virtv1alpha1.NetworkInterface{{Name: "eth0", Network: benchNetwork}},
				Disks:             []virtv1alpha1.Disk{{Name: virtv1alpha1.RootDiskName, Size: benchRootSizeText}}}})
	})
}

// applyAlone measures the apply on a control plane of its own with nothing
// else running (no manager, no simulator): how long the API server and
// etcd on this machine take to admit the N XenVMs, and their CPU; then one
// status write per XenVM. No operator can be done sooner than the creates,
// nor ask less CPU of the API server than both; the baseline pays neither.
func applyAlone(ctx context.Context, s Settings, outDir string, res *Result) error {
	step("Apply alone: a control plane of its own admitting %d XenVMs, no manager", s.N)
	cp, k8s, err := startControlPlane(ctx, filepath.Join(outDir, "kubeconfig-apply-alone"), true)
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	pids := controlPlanePids()
	cpu := cpuSeconds(pids...)
	t0 := time.Now()
	if err := applyXenVMs(ctx, k8s, "default", s.N); err != nil {
		return err
	}
	res.ApplyAloneSeconds = time.Since(t0).Seconds()
	res.ApplyAloneCPUSeconds = cpuSeconds(pids...) - cpu
	step("Apply alone: %d XenVMs created in %.1fs (kube-apiserver and etcd %.1f CPU s)", s.N, res.ApplyAloneSeconds, res.ApplyAloneCPUSeconds)
	if res.finalStatus == nil {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": res.finalStatus})
	if err != nil {
		return err
	}
	cpu = cpuSeconds(pids...)
	t0 = time.Now()
	if err := harness.Parallel(s.N, 16, func(i int) error {
		return k8s.Status().Patch(ctx, &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("vm-%04d", i)}},
			client.RawPatch(types.MergePatchType, patch))
	}); err != nil {
		return err
	}
	res.StatusAloneSeconds = time.Since(t0).Seconds()
	res.StatusAloneCPUSeconds = cpuSeconds(pids...) - cpu
	step("Apply alone: one status write per XenVM in %.1fs (kube-apiserver and etcd %.1f CPU s)", res.StatusAloneSeconds, res.StatusAloneCPUSeconds)
	return nil
}

// fetchProfile saves the manager's profile at path into file.
func fetchProfile(addr, path, file string) {
	resp, err := http.Get("http://" + addr + path) //nolint:gosec // the manager this program started
	if err != nil {
		step("Profile %s: %v", path, err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	f, err := os.Create(filepath.Clean(file))
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	_, _ = io.Copy(f, resp.Body)
}

// profiler takes consecutive CPU profiles of the manager (pprof endpoint)
// until stopped, then one heap profile: merge them with
// `go tool pprof -top bin/manager bin/bench/.../cpu-N-*.pprof`. Meanwhile
// heap-N-peak.pprof is the heap when the manager's RSS was highest (taken
// again each time the RSS grows by 8 MiB).
func profiler(addr, dir string, n, pid int) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	peakDone := make(chan struct{})
	go func() {
		defer close(peakDone)
		peak := 0.0
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if rss := procStatusMiB(pid, "VmRSS:"); rss > peak+8 {
				peak = rss
				fetchProfile(addr, "/debug/pprof/heap", filepath.Join(dir, fmt.Sprintf("heap-%d-peak.pprof", n)))
			}
		}
	}()
	go func() {
		defer close(finished)
		for i := 0; ; i++ {
			fetchProfile(addr, "/debug/pprof/profile?seconds=10", filepath.Join(dir, fmt.Sprintf("cpu-%d-%02d.pprof", n, i)))
			select {
			case <-done:
				return
			default:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		<-peakDone
		fetchProfile(addr, "/debug/pprof/heap", filepath.Join(dir, fmt.Sprintf("heap-%d.pprof", n)))
	}
}

// scrapeRequestsByMethod reads rest_client_requests_total from the
// manager's metrics, by HTTP method.
func scrapeRequestsByMethod(url string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get(url) //nolint:gosec // the manager this program started
	if err != nil {
		return out
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "rest_client_requests_total{") {
			continue
		}
		method := "?"
		if i := strings.Index(line, `method="`); i >= 0 {
			method, _, _ = strings.Cut(line[i+len(`method="`):], `"`)
		}
		var v float64
		fields := strings.Fields(line)
		if _, err := fmt.Sscan(fields[len(fields)-1], &v); err == nil {
			out[method] += v
		}
	}
	return out
}

// apiserverRequests reads apiserver_request_total from the API server, by
// "verb resource[/subresource]": every client's requests, this program's
// (the creates, its watch) included.
func apiserverRequests(ctx context.Context, cfg *rest.Config) map[string]float64 {
	out := map[string]float64{}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return out
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(cfg.Host, "/")+"/metrics", nil)
	if err != nil {
		return out
	}
	resp, err := hc.Do(req)
	if err != nil {
		return out
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return out
	}
	label := func(line, name string) string {
		i := strings.Index(line, name+`="`)
		if i < 0 {
			return ""
		}
		v, _, _ := strings.Cut(line[i+len(name)+2:], `"`)
		return v
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		key := label(line, "verb") + " " + label(line, "resource")
		if sub := label(line, "subresource"); sub != "" {
			key += "/" + sub
		}
		var v float64
		fields := strings.Fields(line)
		if _, err := fmt.Sscan(fields[len(fields)-1], &v); err == nil {
			out[key] += v
		}
	}
	return out
}

// writeTable writes the scale table of the reports in dir, by N.
func writeTable(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "report-*.json"))
	if err != nil {
		return err
	}
	var results []*Result
	for _, f := range files {
		data, err := os.ReadFile(filepath.Clean(f))
		if err != nil {
			return err
		}
		r := &Result{}
		if err := json.Unmarshal(data, r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b *Result) int { return a.Settings.N - b.Settings.N })
	md := scaleTable(results)
	fmt.Print(md)
	return os.WriteFile(filepath.Join(dir, "scale.md"), []byte(md), 0o600)
}

// scaleTable is the one table of a scale run: every N beside its baseline
// and lower bound, and the targets of issue 16.
func scaleTable(results []*Result) string {
	var b strings.Builder
	if len(results) == 0 {
		return ""
	}
	s := results[0].Settings
	fmt.Fprintf(&b, "# xen-operator benchmark, scale mode\n\n")
	fmt.Fprintf(&b, "Runs from %s (manager %s). Simulator: one host; every call %s plus up to %s of jitter; clone %s, provision %s, start %s, "+
		"shutdown %s; guest agent after %s (a tenth of the default durations). %d operations in flight (the operator's per-pool cap "+
		"and the baseline's workers); the manager runs %d reconciles at once. Everything (API server, etcd, simulator, manager, "+
		"this program) shares the machine's cores. %s\n\n",
		results[0].Date, results[0].ManagerBin, dur(s.CallLatencyMS), dur(s.JitterMS), dur(s.CloneMS), dur(s.ProvisionMS), dur(s.StartMS), dur(s.ShutdownMS),
		dur(s.BootDelayMS), s.Concurrency, s.Reconciles, memoryLimitNote(s.MemoryLimitMiB))
	b.WriteString("| N | operator s | baseline s | lower bound s | apply s (alone) | operator/baseline | first Running s | peak RSS MiB (anonymous) | " +
		"CPU ms/VM (apply to Running) | CPU ms/VM (whole run) | API server CPU ms/VM (alone) | API requests/VM | XenAPI calls/VM | out-of-band p50 / p99 s |\n" +
		"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		n := float64(r.Settings.N)
		fmt.Fprintf(&b, "| %d | %.1f | %.1f | %.1f | %.1f (%.1f) | %.2f | %.2f | %.1f (%.1f) | %.1f | %.1f | %.1f (%.1f) | %.2f | %.2f | %.3f / %.3f |\n",
			r.Settings.N, r.OperatorSeconds, r.BaselineSeconds, r.LowerBoundSeconds, r.ApplySeconds, r.ApplyAloneSeconds, r.OperatorSeconds/r.BaselineSeconds,
			r.FirstRunningSeconds, r.PeakRSSMiB, r.PeakAnonRSSMiB, 1000*r.ApplyCPUSeconds/n, 1000*r.CPUSeconds/n,
			1000*r.ControlPlaneCPUSeconds/n, 1000*(r.ApplyAloneCPUSeconds+r.StatusAloneCPUSeconds)/n, r.APIRequestsPerVM, r.CallsPerVMTotal, r.OutOfBandStartedP50, r.OutOfBandStartedP99)
	}
	b.WriteString("\nApply is how long the API server took to admit the N XenVMs (16 clients, while the operator runs): the operator " +
		"cannot be done before it; the baseline never touches Kubernetes. Alone is the same apply on a control plane of its own " +
		"before the run, with no manager, simulator or baseline running: the floor this machine's API server and etcd put under " +
		"any operator's time. API server CPU is kube-apiserver's and etcd's together, from the apply to all Running (alone: for " +
		"the creates and one status write per XenVM on that control plane). " +
		"API requests are the manager's own (its rest_client_requests_total, every verb and resource, watches and " +
		"events included) from the first apply to all N Running and Ready, per VM. CPU is the manager's (/proc); peak RSS its VmHWM " +
		"over the whole run, anonymous its RssAnon at the highest (sampled): the RSS without the pages of the manager's binary, " +
		"which the kernel can drop and read again.\n\n")
	b.WriteString("## Targets (issue 16)\n\n| target | want | got | |\n|---|---|---|---|\n")
	first, last := results[0], results[len(results)-1]
	worst := 0.0
	var ratios, firsts []string
	firstOK := true
	for _, r := range results {
		worst = max(worst, r.OperatorSeconds/r.BaselineSeconds)
		ratios = append(ratios, fmt.Sprintf("%.2fx", r.OperatorSeconds/r.BaselineSeconds))
		firsts = append(firsts, fmt.Sprintf("%.2fs", r.FirstRunningSeconds))
		firstOK = firstOK && r.FirstRunningSeconds > 0 && r.FirstRunningSeconds <= 5
	}
	row := func(name, want, got string, met bool) {
		mark := "met"
		if !met {
			mark = "**missed**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, want, got, mark)
	}
	row("time to all Running vs the baseline, every N", "<= 1.10x", strings.Join(ratios, ", "), worst <= 1.10)
	var floors []string
	for _, r := range results {
		if r.ApplyAloneCPUSeconds > 0 {
			floors = append(floors, fmt.Sprintf("%.1fs vs %.1fs", (r.ApplyAloneCPUSeconds+r.StatusAloneCPUSeconds)/float64(runtime.NumCPU()),
				1.10*r.BaselineSeconds))
		}
	}
	if len(floors) > 0 {
		fmt.Fprintf(&b, "| the API server's floor: CPU of the creates and one status write per XenVM alone over the %d cores, vs 1.10x the baseline | "+
			"below | %s | (no manager, simulator or watch counted) |\n", runtime.NumCPU(), strings.Join(floors, ", "))
	}
	row("first VM Running after the apply, every N", "<= 5 s", strings.Join(firsts, ", "), firstOK)
	row(fmt.Sprintf("peak RSS at N=%d", last.Settings.N), "< 250 MiB", fmt.Sprintf("%.1f MiB (%.1f MiB up to all Running; anonymous %.1f MiB)",
		last.PeakRSSMiB, last.PeakRSSRunningMiB, last.PeakAnonRSSMiB), last.PeakRSSMiB > 0 && last.PeakRSSMiB < 250)
	a, z := first.ApplyCPUSeconds/float64(first.Settings.N), last.ApplyCPUSeconds/float64(last.Settings.N)
	row(fmt.Sprintf("CPU per VM at N=%d vs N=%d (apply to Running)", last.Settings.N, first.Settings.N), "no worse",
		fmt.Sprintf("%.1f ms vs %.1f ms", 1000*z, 1000*a), z <= a*1.05)
	maxReq := 0.0
	for _, r := range results {
		maxReq = max(maxReq, r.APIRequestsPerVM)
	}
	row("API requests per VM, apply to Running, every N", "<= 6", fmt.Sprintf("%.2f at most", maxReq), maxReq <= 6)
	row(fmt.Sprintf("out-of-band reaction p99 at N=%d", last.Settings.N), "< 1 s", fmt.Sprintf("%.3f s", last.OutOfBandStartedP99),
		last.OutOfBandStartedP99 < 1)

	b.WriteString("\n## API requests per VM by method (apply to Running)\n\n| N | ")
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
	b.WriteString(strings.Join(methods, " | ") + " |\n|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %d ", r.Settings.N)
		for _, m := range methods {
			fmt.Fprintf(&b, "| %.2f ", r.APIRequestsByMethod[m]/float64(r.Settings.N))
		}
		b.WriteString("|\n")
	}
	return b.String()
}

// procStatusMiB reads a kB field of /proc/<pid>/status, MiB.
func procStatusMiB(pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func memoryLimitNote(mib int) string {
	if mib <= 0 {
		return "The manager runs without a memory limit (GOGC alone)."
	}
	return fmt.Sprintf("The manager runs as in the chart's container limited to %d MiB: GOMEMLIMIT %.0f MiB (--memory-limit-ratio %.1f).",
		mib, float64(mib)*memlimit.DefaultRatio, memlimit.DefaultRatio)
}
