// Command bench measures how fast and how cheaply the operator converges N
// XenVMs on a simulated pool with realistic latencies, against a baseline
// that installs the same VMs with a plain loop over the project's client.
// It writes a Markdown and JSON report and an SVG plot under bin/bench/.
// Run it with `make bench BENCH_N=1000`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/memlimit"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xapisim"
	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/test/harness"
)

// Settings are the benchmark's parameters.
type Settings struct {
	N              int     `json:"n"`
	Concurrency    int     `json:"concurrency"`
	Reconciles     int     `json:"max_concurrent_reconciles"`
	CallLatencyMS  float64 `json:"call_latency_ms"`
	JitterMS       float64 `json:"jitter_ms"`
	CloneMS        float64 `json:"clone_ms"`
	ProvisionMS    float64 `json:"provision_ms"`
	StartMS        float64 `json:"start_ms"`
	ShutdownMS     float64 `json:"shutdown_ms"`
	BootDelayMS    float64 `json:"boot_delay_ms"`
	SteadySeconds  float64 `json:"steady_seconds"`
	OutOfBandCount int     `json:"out_of_band_count"`
	// CloudInitCount is how many XenVMs with a cloudInit follow (N/10, at
	// least 10, when negative).
	CloudInitCount int  `json:"cloud_init_count"`
	Scale          bool `json:"scale"`
	Profile        bool `json:"profile"`
	// MemoryLimitMiB is the container memory limit the manager is run as
	// if under: its GOMEMLIMIT is the share of it the manager takes from
	// its cgroup in a container (--memory-limit-ratio). 0: none.
	MemoryLimitMiB int `json:"memory_limit_mib"`
}

// Point is the number of VMs running at a time.
type Point struct {
	Seconds float64 `json:"s"`
	Running int     `json:"running"`
}

// Target is a goal and whether the run met it.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
	Why  string `json:"why,omitempty"`
}

// Result is one run's report.
type Result struct {
	Date     string   `json:"date"`
	Settings Settings `json:"settings"`

	OperatorSeconds      float64            `json:"operator_seconds"`
	BaselineSeconds      float64            `json:"baseline_seconds"`
	LowerBoundSeconds    float64            `json:"lower_bound_seconds"`
	CallsPerVM           map[string]float64 `json:"calls_per_vm"`
	CallsPerVMTotal      float64            `json:"calls_per_vm_total"`
	EventPollsPerVM      float64            `json:"event_polls_per_vm"`
	BaselineCallsPerVM   float64            `json:"baseline_calls_per_vm"`
	Logins               int64              `json:"operator_logins"`
	SessionsPeak         int                `json:"operator_sessions_peak"`
	SteadyCallsPerMinute float64            `json:"steady_calls_per_minute"`
	SteadyCallsByMethod  map[string]int     `json:"steady_calls_by_method"`
	OutOfBandStartedP50  float64            `json:"out_of_band_reaction_p50_seconds"`
	OutOfBandStartedP99  float64            `json:"out_of_band_reaction_p99_seconds"`
	OutOfBandRunningP50  float64            `json:"out_of_band_running_p50_seconds"`
	OutOfBandRunningP99  float64            `json:"out_of_band_running_p99_seconds"`
	DeleteSeconds        float64            `json:"delete_seconds"`
	LeakedVMs            int                `json:"leaked_vms"`
	PeakRSSMiB           float64            `json:"manager_peak_rss_mib"`
	// PeakRSSRunningMiB is the manager's peak RSS from its start to all N
	// Running (the rest of PeakRSSMiB comes later: out-of-band, cloudInit,
	// the mass delete).
	PeakRSSRunningMiB float64 `json:"manager_peak_rss_running_mib"`
	// PeakAnonRSSMiB is the peak of the manager's anonymous RSS (sampled
	// every 250 ms): its RSS without the pages of its binary, which the
	// kernel can drop and read again (a container near its memory limit
	// loses them before it is killed; the heap it cannot drop).
	PeakAnonRSSMiB        float64            `json:"manager_peak_anon_rss_mib"`
	CPUSeconds            float64            `json:"manager_cpu_seconds"`
	APIRequests           float64            `json:"manager_api_requests"`
	OperatorTimeline      []Point            `json:"operator_timeline"`
	BaselineTimeline      []Point            `json:"baseline_timeline"`
	Targets               []Target           `json:"targets"`
	OperationsPeakInSim   int                `json:"simulator_operations_peak"`
	OperatorOriginatorKey string             `json:"operator_originator"`
	CloudInitN            int                `json:"cloud_init_n"`
	CloudInitSeconds      float64            `json:"cloud_init_seconds"`
	CloudInitCallsPerVM   map[string]float64 `json:"cloud_init_calls_per_vm"`
	CloudInitUploadsPerVM float64            `json:"cloud_init_uploads_per_vm"`
	// ApplySeconds is how long the API server took to admit the N XenVMs
	// (16 clients creating them): no operator can be done sooner.
	ApplySeconds float64 `json:"apply_seconds"`
	// ApplyAloneSeconds is how long a control plane of its own, with no
	// manager and nothing else running, took to admit the N XenVMs (scale
	// mode): the floor this machine's API server puts under any operator's
	// time, which the baseline does not pay.
	ApplyAloneSeconds float64 `json:"apply_alone_seconds,omitempty"`
	// ControlPlaneCPUSeconds is the CPU time of kube-apiserver and etcd from
	// the apply to all Running; ApplyAloneCPUSeconds theirs for the apply
	// alone.
	ControlPlaneCPUSeconds float64 `json:"control_plane_cpu_seconds"`
	ApplyAloneCPUSeconds   float64 `json:"apply_alone_control_plane_cpu_seconds,omitempty"`
	// StatusAloneSeconds and StatusAloneCPUSeconds are, on that control
	// plane, one status write per XenVM (the status a XenVM of the run
	// ended with, Running and Ready): with the creates, the least any
	// operator that reports a VM's state asks of the API server.
	StatusAloneSeconds    float64 `json:"status_alone_seconds,omitempty"`
	StatusAloneCPUSeconds float64 `json:"status_alone_control_plane_cpu_seconds,omitempty"`
	// FirstRunningSeconds is the apply to the first XenVM Running and Ready.
	FirstRunningSeconds float64 `json:"first_running_seconds"`
	// ApplyCPUSeconds is the manager's CPU time from the apply to all Running.
	ApplyCPUSeconds float64 `json:"manager_apply_cpu_seconds"`
	// APIRequestsPerVM and APIRequestsByMethod are the manager's API server
	// requests from the apply to all Running.
	APIRequestsPerVM    float64            `json:"manager_api_requests_per_vm"`
	APIRequestsByMethod map[string]float64 `json:"manager_api_requests_by_method"`
	// APIServerRequestsPerVM is the API server's count (every client) from
	// the apply to all Running, by verb and resource, per VM.
	APIServerRequestsPerVM map[string]float64 `json:"apiserver_requests_per_vm"`
	// finalStatus is a XenVM's status once Running and Ready in the
	// operator's run: what the apply alone writes, once per XenVM.
	finalStatus *virtv1alpha1.XenVMStatus
	// ManagerBin is the manager binary the run measured.
	ManagerBin string `json:"manager_bin"`
}

func main() {
	log.SetLogger(logr.Discard())
	var s Settings
	var callLatency, jitter, clone, provision, start, shutdown, boot, steady time.Duration
	flag.IntVar(&s.N, "n", 1000, "XenVMs to converge.")
	flag.IntVar(&s.Concurrency, "concurrency", 16, "XenAPI operations in flight (operator cap and baseline workers).")
	flag.IntVar(&s.Reconciles, "reconciles", 32, "The manager's --max-concurrent-reconciles.")
	flag.DurationVar(&callLatency, "call-latency", 2*time.Millisecond, "Simulated latency of every call.")
	flag.DurationVar(&jitter, "jitter", 2*time.Millisecond, "Random extra latency per call, up to this.")
	flag.DurationVar(&clone, "clone", 300*time.Millisecond, "VM.clone duration.")
	flag.DurationVar(&provision, "provision", 700*time.Millisecond, "VM.provision duration.")
	flag.DurationVar(&start, "start", time.Second, "VM.start duration.")
	flag.DurationVar(&shutdown, "shutdown", 500*time.Millisecond, "Shutdown durations (clean and hard).")
	flag.DurationVar(&boot, "boot-delay", 3*time.Second, "Start to guest agent report.")
	flag.DurationVar(&steady, "steady", time.Minute, "How long the steady state is measured.")
	flag.IntVar(&s.OutOfBandCount, "out-of-band", 100, "Out-of-band halts to time.")
	flag.IntVar(&s.CloudInitCount, "cloud-init", -1, "XenVMs with a cloudInit applied after the others (negative: N/10, at least 10).")
	flag.BoolVar(&s.Scale, "scale", false, "Scale mode: operations ten times shorter, 64 operations per pool, 64 reconciles, "+
		"20s of steady state, 100 cloudInit XenVMs (flags given explicitly win); reports under <out>/scale.")
	sizes := flag.String("sizes", "", "Comma-separated Ns to run one after the other (each on a fresh control plane, simulator "+
		"and manager), with one table of them all; overrides -n.")
	flag.BoolVar(&s.Profile, "profile", false, "Take CPU profiles of the manager from the apply to all Running, and a heap profile then.")
	table := flag.Bool("table", false, "Only write the scale table from the report-N.json files in the report folder (runs of the same settings).")
	out := flag.String("out", "bin/bench", "Report folder.")
	flag.StringVar(&managerBin, "manager", "bin/manager", "The manager binary (to compare builds on one simulator).")
	shards := flag.Bool("shards", false, "Two pools, N/2 XenVMs each: one manager doing both, then two with a --xenhost-selector each (shards.go).")
	flag.IntVar(&s.MemoryLimitMiB, "memory-limit", 256, "The container memory limit (MiB) the manager runs as if under, the chart's "+
		"default: GOMEMLIMIT is set to the share of it the manager sets itself from its cgroup (0.8). 0: none.")
	flag.StringVar(&managerArgs, "manager-args", "", "Extra flags for the manager, space-separated (e.g. --zap-time-encoding=rfc3339nano).")
	flag.Parse()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	s.CallLatencyMS, s.JitterMS, s.CloneMS, s.ProvisionMS = ms(callLatency), ms(jitter), ms(clone), ms(provision)
	s.StartMS, s.ShutdownMS, s.BootDelayMS, s.SteadySeconds = ms(start), ms(shutdown), ms(boot), steady.Seconds()
	if *shards {
		if err := runShards(s, *out); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	dir := *out
	if s.Scale {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		scaleSettings(&s, set)
		dir = filepath.Join(dir, "scale")
	}
	if *table {
		if err := writeTable(dir); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	ns := []int{s.N}
	if *sizes != "" {
		ns = nil
		for _, f := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				fmt.Fprintln(os.Stderr, "bench: -sizes:", f, "is not a size")
				os.Exit(2)
			}
			ns = append(ns, n)
		}
	}
	var results []*Result
	for _, n := range ns {
		s.N = n
		r, err := run(s, dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		results = append(results, r)
	}
	if s.Scale || len(results) > 1 {
		slices.SortFunc(results, func(a, b *Result) int { return a.Settings.N - b.Settings.N })
		md := scaleTable(results)
		if err := os.WriteFile(filepath.Join(dir, "scale.md"), []byte(md), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		fmt.Printf("\n%s\nTable: %s\n", md, filepath.Join(dir, "scale.md"))
	}
}

// managerBin is the manager binary the benchmark runs, with managerArgs.
var managerBin, managerArgs string

func step(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func dur(msv float64) string { return (time.Duration(msv * float64(time.Millisecond))).String() }

func run(s Settings, outDir string) (*Result, error) {
	if err := os.MkdirAll(outDir, 0o750); err != nil {
		return nil, err
	}
	res := &Result{Date: time.Now().UTC().Format(time.RFC3339), Settings: s, ManagerBin: managerBin}
	ctx := context.Background()
	if err := measure(ctx, s, outDir, res); err != nil {
		return nil, err
	}
	if s.Scale {
		// Last, on a quiet machine: the run's control plane, simulator and
		// manager have stopped.
		if err := applyAlone(ctx, s, outDir, res); err != nil {
			return nil, fmt.Errorf("apply alone: %w", err)
		}
	}
	res.LowerBoundSeconds = lowerBound(s)
	evaluate(res)
	return res, writeReport(res, outDir)
}

// measure runs the baseline and the operator on a control plane and a
// simulator of their own, stopped when it returns.
func measure(ctx context.Context, s Settings, outDir string, res *Result) error {
	step("Starting the local control plane")
	kubeconfig, _ := filepath.Abs(filepath.Join(outDir, "kubeconfig"))
	cp, k8s, err := startControlPlane(ctx, kubeconfig, true)
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	cpPids := controlPlanePids()

	step("Starting the simulator: latency %s+%s per call, clone %s, provision %s, start %s, shutdown %s, boot %s",
		dur(s.CallLatencyMS), dur(s.JitterMS), dur(s.CloneMS), dur(s.ProvisionMS), dur(s.StartMS), dur(s.ShutdownMS), dur(s.BootDelayMS))
	ops := fmt.Sprintf("clone=%s,provision=%s,start=%s,clean_shutdown=%s,hard_shutdown=%s,shutdown=%s",
		dur(s.CloneMS), dur(s.ProvisionMS), dur(s.StartMS), dur(s.ShutdownMS), dur(s.ShutdownMS), dur(s.ShutdownMS))
	sim, urls, err := harness.StartSimulator("bin/xapi-simulator", 1, []string{
		"--latency", dur(s.CallLatencyMS), "--jitter", dur(s.JitterMS), "--op-durations", ops,
		"--boot-delay", dur(s.BootDelayMS), "--host-memory", "64Ti"}, filepath.Join(outDir, "xapi-simulator.log"))
	if err != nil {
		return err
	}
	defer func() { _ = sim.Stop(10 * time.Second) }()
	simURL := urls[0]

	pool := xenapi.NewSessions(xenapi.Options{Originator: "xen-operator-bench", MaxConcurrentMutations: s.Concurrency})
	defer pool.Close(ctx)
	xc, err := pool.Client("bench", xenapi.Endpoint{URL: simURL, Username: "root", Password: "xenserver"})
	if err != nil {
		return err
	}

	if err := baseline(ctx, s, xc, simURL, res); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	if err := operator(ctx, s, cp.Config, cpPids, k8s, kubeconfig, xc, simURL, outDir, res); err != nil {
		return fmt.Errorf("operator: %w", err)
	}
	return nil
}

// lowerBound is the fastest the simulator's durations and the concurrency
// cap allow: every VM needs clone, provision and start one after the other,
// at most Concurrency operations at once, plus four calls' latency.
func lowerBound(s Settings) float64 {
	perVM := (s.CloneMS + s.ProvisionMS + s.StartMS + 4*(s.CallLatencyMS+s.JitterMS/2)) / 1000
	return math.Ceil(float64(s.N)/float64(s.Concurrency)) * perVM
}

func stats(url string) (xapisim.Stats, error) {
	var st xapisim.Stats
	resp, err := http.Get(url + "/sim/stats") //nolint:gosec // the simulator this program started
	if err != nil {
		return st, err
	}
	defer func() { _ = resp.Body.Close() }()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// sampler records how many VMs run, every 250 ms, until stopped.
func sampler(count func() int) (stop func() []Point) {
	var mu sync.Mutex
	var pts []Point
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			n := count()
			mu.Lock()
			pts = append(pts, Point{Seconds: time.Since(start).Seconds(), Running: n})
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() []Point {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return append(pts, Point{Seconds: time.Since(start).Seconds(), Running: count()})
	}
}

// baseline installs and starts the N VMs the way the XenServer SDK guide
// shows (clone, point the disks at an SR, provision, start), Concurrency at a
// time, then removes them.
func baseline(ctx context.Context, s Settings, xc *xenapi.Client, simURL string, res *Result) error {
	step("Baseline: %d VMs installed and started by a plain loop, %d at a time", s.N, s.Concurrency)
	tmpls, err := xc.VMsByName(ctx, "Debian Bookworm 12")
	if err != nil || len(tmpls) != 1 {
		return fmt.Errorf("template: %v", err)
	}
	p, err := xc.PoolRecord(ctx)
	if err != nil {
		return err
	}
	sr, err := xc.SR(ctx, p.DefaultSR)
	if err != nil {
		return err
	}
	oc := tmpls[0].OtherConfig
	oc["disks"] = vmservice.DiskPlan{DefaultSR: sr.UUID, RootSize: benchRootSize}.Rewrite(oc["disks"])
	delete(oc, "default_template")
	nets, err := xc.Networks(ctx)
	if err != nil {
		return err
	}
	lan := slices.IndexFunc(nets, func(n *xenapi.Network) bool { return n.NameLabel == benchNetwork })
	if lan < 0 {
		return fmt.Errorf("no network is named %q", benchNetwork)
	}
	before, err := stats(simURL)
	if err != nil {
		return err
	}

	var running atomic.Int64
	refs := make([]string, s.N)
	stop := sampler(func() int { return int(running.Load()) })
	t0 := time.Now()
	err = harness.Parallel(s.N, s.Concurrency, func(i int) error {
		ref, err := xc.CloneVM(ctx, tmpls[0].Ref, fmt.Sprintf("baseline-%04d", i))
		if err != nil {
			return err
		}
		refs[i] = ref
		if err := xc.SetVMOtherConfig(ctx, ref, oc); err != nil {
			return err
		}
		if err := xc.ProvisionVM(ctx, ref); err != nil {
			return err
		}
		// Stock templates have no interface: the SDK's install example
		// creates it after provision.
		if _, err := xc.CreateVIF(ctx, xenapi.VIFSpec{VM: ref, Network: nets[lan].Ref, Device: "0"}); err != nil {
			return err
		}
		if err := xc.StartVM(ctx, ref, false); err != nil {
			return err
		}
		running.Add(1)
		return nil
	})
	res.BaselineSeconds = time.Since(t0).Seconds()
	res.BaselineTimeline = stop()
	if err != nil {
		return err
	}
	after, err := stats(simURL)
	if err != nil {
		return err
	}
	res.BaselineCallsPerVM = float64(callsExceptEvents(after, before)) / float64(s.N)
	step("Baseline: %d VMs running in %.1fs, %.2f calls per VM", s.N, res.BaselineSeconds, res.BaselineCallsPerVM)

	step("Baseline: removing its VMs")
	return harness.Parallel(s.N, s.Concurrency, func(i int) error {
		vm, err := xc.VM(ctx, refs[i])
		if err != nil {
			return err
		}
		if err := xc.HardShutdownVM(ctx, vm.Ref); err != nil {
			return err
		}
		for _, vbd := range vm.VBDs {
			b, err := xc.VBD(ctx, vbd)
			if err != nil {
				return err
			}
			if err := xc.DestroyVDI(ctx, b.VDI); err != nil {
				return err
			}
		}
		return xc.DestroyVM(ctx, vm.Ref)
	})
}

// cloudInit applies XenVMs with a cloudInit (N/10, at least 10) beside the
// others, and measures their time to Running and Ready and their XenAPI
// calls: each has a config drive to create, write over HTTP and attach.
func cloudInit(ctx context.Context, s Settings, k8s client.Client, vms *tracker, simURL, ns string, res *Result) error {
	n := s.CloudInitCount
	if n < 0 {
		n = max(s.N/10, 10)
	}
	res.CloudInitN = n
	if n == 0 {
		return nil
	}
	step("Operator: applying %d XenVMs with a cloudInit", n)
	before, err := stats(simURL)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := harness.Parallel(n, 16, func(i int) error {
		return k8s.Create(ctx, &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("ci-%04d", i)},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "bench"}, Template: "Debian Bookworm 12",
				NetworkInterfaces: []virtv1alpha1.NetworkInterface{{Name: "eth0", Network: benchNetwork}},
				CloudInit:         &virtv1alpha1.CloudInit{UserData: "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA bench\n"}}})
	}); err != nil {
		return err
	}
	if err := harness.WaitFor(ctx, 10*time.Minute, func() (bool, error) { return vms.Running("ci") == n, nil }); err != nil {
		return err
	}
	res.CloudInitSeconds = time.Since(t0).Seconds()
	after, err := stats(simURL)
	if err != nil {
		return err
	}
	res.CloudInitCallsPerVM = callsPerVM(after, before, n)
	// Each upload has its task (task.create), which the simulator counts.
	res.CloudInitUploadsPerVM = res.CloudInitCallsPerVM["task.create"]
	step("Operator: %d XenVMs with a cloudInit Running in %.1fs", n, res.CloudInitSeconds)
	return nil
}

// Every benchmark VM has one interface and a root disk larger than the
// template's: the least a useful VM declares.
const (
	benchNetwork      = "Pool-wide network associated with eth0"
	benchRootSize     = 12 << 30
	benchRootSizeText = "12Gi"
)

// callsPerVM is the calls of after less before, by method, per VM, the
// event long poll left out.
func callsPerVM(after, before xapisim.Stats, n int) map[string]float64 {
	out := map[string]float64{}
	for m, c := range after.Calls {
		if d := c - before.Calls[m]; d > 0 && m != "event.from" {
			out[m] = float64(d) / float64(n)
		}
	}
	return out
}

func callsExceptEvents(after, before xapisim.Stats) int {
	total := 0
	for m, n := range after.Calls {
		if m != "event.from" {
			total += n - before.Calls[m]
		}
	}
	return total
}

func operator(ctx context.Context, s Settings, cfg *rest.Config, cpPids []int, k8s client.Client, kubeconfig string, xc *xenapi.Client,
	simURL, outDir string, res *Result) error {
	step("Operator: starting %s (%d reconciles, %d operations per pool)", managerBin, s.Reconciles, s.Concurrency)
	args := strings.Fields(managerArgs)
	pprofAddr, err := harness.FreePort()
	if err != nil {
		return err
	}
	if s.Profile {
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	mgr, metricsAddr, err := harness.StartManager(harness.ManagerOptions{Bin: managerBin, Kubeconfig: kubeconfig,
		LogPath: filepath.Join(outDir, "manager.log"), Reconciles: s.Reconciles, Operations: s.Concurrency, Args: args,
		Env: memoryLimitEnv(s.MemoryLimitMiB)})
	if err != nil {
		return err
	}
	defer func() { _ = mgr.Stop(30 * time.Second) }()
	stopAnon := anonPeak(mgr.Pid())
	defer func() { res.PeakAnonRSSMiB = stopAnon() }()

	ns := "default"
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	vms, err := startTracker(watchCtx, cfg, k8s, ns)
	if err != nil {
		return err
	}
	if err := k8s.Create(ctx, harness.SimulatorCredentials(ns, "bench-credentials")); err != nil {
		return err
	}
	host := harness.SimulatorXenHost(ns, "bench", simURL, "bench-credentials")
	if err := k8s.Create(ctx, host); err != nil {
		return err
	}
	if err := harness.WaitForXenHostReady(ctx, k8s, client.ObjectKeyFromObject(host), 60*time.Second); err != nil {
		return fmt.Errorf("the XenHost did not become Ready: %w", err)
	}

	before, err := stats(simURL)
	if err != nil {
		return err
	}
	step("Operator: applying %d XenVMs", s.N)
	countRunning := func() int { return vms.Running("vm") }
	metricsURL := "http://" + metricsAddr + "/metrics"
	reqBefore := scrapeRequestsByMethod(metricsURL)
	serverBefore := apiserverRequests(ctx, cfg)
	cpuBefore := cpuSeconds(mgr.Pid())
	cpBefore := cpuSeconds(cpPids...)
	var stopProfile func()
	if s.Profile {
		stopProfile = profiler(pprofAddr, outDir, s.N, mgr.Pid())
	}
	stop := sampler(countRunning)
	t0 := time.Now()
	if err := applyXenVMs(ctx, k8s, ns, s.N); err != nil {
		return err
	}
	res.ApplySeconds = time.Since(t0).Seconds()
	step("Operator: %d XenVMs created in %.1fs", s.N, res.ApplySeconds)
	lastReport := time.Now()
	err = harness.WaitFor(ctx, time.Duration(float64(time.Second)*math.Max(2400, 4*lowerBound(s))), func() (bool, error) {
		n := countRunning()
		if time.Since(lastReport) > 10*time.Second {
			step("Operator: %d/%d XenVMs Running and Ready", n, s.N)
			lastReport = time.Now()
		}
		if exited, err := mgr.Exited(); exited {
			return false, fmt.Errorf("the manager exited (%v): %s", err, harness.Tail(mgr.LogPath, 20))
		}
		return n == s.N, nil
	})
	res.OperatorSeconds = time.Since(t0).Seconds()
	res.ApplyCPUSeconds = cpuSeconds(mgr.Pid()) - cpuBefore
	res.ControlPlaneCPUSeconds = cpuSeconds(cpPids...) - cpBefore
	res.APIRequestsByMethod = map[string]float64{}
	for m, n := range scrapeRequestsByMethod(metricsURL) {
		res.APIRequestsByMethod[m] = n - reqBefore[m]
		res.APIRequestsPerVM += (n - reqBefore[m]) / float64(s.N)
	}
	res.APIServerRequestsPerVM = map[string]float64{}
	for k, n := range apiserverRequests(ctx, cfg) {
		if d := n - serverBefore[k]; d > 0 {
			res.APIServerRequestsPerVM[k] = d / float64(s.N)
		}
	}
	if f := vms.First("vm"); !f.IsZero() {
		res.FirstRunningSeconds = f.Sub(t0).Seconds()
	}
	res.OperatorTimeline = stop()
	if err == nil {
		sample := &virtv1alpha1.XenVM{}
		if getErr := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "vm-0000"}, sample); getErr == nil {
			res.finalStatus = &sample.Status
		}
	}
	res.PeakRSSRunningMiB, _ = procUsage(mgr.Pid())
	if stopProfile != nil {
		stopProfile()
	}
	if err != nil {
		return err
	}
	step("Operator: %d XenVMs Running and reported so in %.1fs (first after %.2fs); %.2f API requests per VM, %.1f ms CPU per VM",
		s.N, res.OperatorSeconds, res.FirstRunningSeconds, res.APIRequestsPerVM, 1000*res.ApplyCPUSeconds/float64(s.N))

	after, err := stats(simURL)
	if err != nil {
		return err
	}
	res.CallsPerVM = callsPerVM(after, before, s.N)
	for _, c := range res.CallsPerVM {
		res.CallsPerVMTotal += c
	}
	res.EventPollsPerVM = float64(after.Calls["event.from"]-before.Calls["event.from"]) / float64(s.N)
	res.OperationsPeakInSim = after.OperationsPeak
	for orig, n := range after.LoginsByOriginator {
		if strings.HasPrefix(orig, "xen-operator/") {
			res.OperatorOriginatorKey = orig
			res.Logins += n
			res.SessionsPeak = max(res.SessionsPeak, after.SessionsPeakByOriginator[orig])
		}
	}

	step("Operator: measuring the steady state for %s", dur(s.SteadySeconds*1000))
	time.Sleep(5 * time.Second)
	s0, err := stats(simURL)
	if err != nil {
		return err
	}
	time.Sleep(time.Duration(s.SteadySeconds * float64(time.Second)))
	s1, err := stats(simURL)
	if err != nil {
		return err
	}
	res.SteadyCallsByMethod = map[string]int{}
	for m, n := range s1.Calls {
		if d := n - s0.Calls[m]; d > 0 && m != "event.from" {
			res.SteadyCallsByMethod[m] = d
		}
	}
	res.SteadyCallsPerMinute = float64(callsExceptEvents(s1, s0)) / (s.SteadySeconds / 60)

	if err := outOfBand(ctx, s, k8s, xc, ns, res); err != nil {
		return fmt.Errorf("out-of-band: %w", err)
	}
	if err := cloudInit(ctx, s, k8s, vms, simURL, ns, res); err != nil {
		return fmt.Errorf("cloud-init: %w", err)
	}

	step("Operator: deleting the %d XenVMs", s.N)
	t0 = time.Now()
	// One by one: a collection delete of ten thousand outlives the API
	// server's request timeout.
	names := make([]string, 0, s.N+res.CloudInitN)
	for i := range s.N {
		names = append(names, fmt.Sprintf("vm-%04d", i))
	}
	for i := range res.CloudInitN {
		names = append(names, fmt.Sprintf("ci-%04d", i))
	}
	if err := harness.Parallel(len(names), 16, func(i int) error {
		return client.IgnoreNotFound(k8s.Delete(ctx, &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names[i]}}))
	}); err != nil {
		return err
	}
	halfway := false
	if err := harness.WaitFor(ctx, 20*time.Minute, func() (bool, error) {
		if s.Profile && !halfway && vms.Len() <= len(names)/2 {
			halfway = true // the heap halfway through the mass delete
			fetchProfile(pprofAddr, "/debug/pprof/heap", filepath.Join(outDir, fmt.Sprintf("heap-%d-delete.pprof", s.N)))
		}
		return vms.Len() == 0, nil
	}); err != nil {
		return err
	}
	res.DeleteSeconds = time.Since(t0).Seconds()
	final, err := stats(simURL)
	if err != nil {
		return err
	}
	for _, n := range final.VMs {
		res.LeakedVMs += n
	}
	step("Operator: deleted in %.1fs, %d VMs left in the simulator", res.DeleteSeconds, res.LeakedVMs)

	res.APIRequests = scrapeRequests("http://" + metricsAddr + "/metrics")
	res.PeakRSSMiB, res.CPUSeconds = procUsage(mgr.Pid())
	return nil
}

// outOfBand halts running VMs behind the operator's back and times how long
// it takes the operator to react (start the VM again) and to have it Running.
func outOfBand(ctx context.Context, s Settings, k8s client.Client, xc *xenapi.Client, ns string, res *Result) error {
	count := min(s.OutOfBandCount, s.N)
	step("Operator: %d out-of-band halts", count)
	sub, err := xc.Subscribe()
	if err != nil {
		return err
	}
	defer sub.Close()
	type mark struct {
		halted, started, running time.Time
	}
	var mu sync.Mutex
	marks := map[string]*mark{}
	// The subscription begins with a full sync of the pool (N VMs and their
	// devices): the halts wait for it, or its decoding, not the operator,
	// would be timed.
	synced := make(chan struct{})
	go func() {
		for e := range sub.Events() {
			if e.Op == xenapi.OpSynced && e.Covers(xenapi.ClassVM) {
				select {
				case <-synced:
				default:
					close(synced)
				}
			}
			vm := e.VM()
			if vm == nil {
				continue
			}
			now := time.Now()
			mu.Lock()
			if m, ok := marks[e.Ref]; ok && !m.halted.IsZero() {
				starting := false
				for _, op := range vm.CurrentOperations {
					starting = starting || op == "start"
				}
				if m.started.IsZero() && (starting || vm.PowerState == xenapi.PowerStateRunning) {
					m.started = now
				}
				if m.running.IsZero() && vm.PowerState == xenapi.PowerStateRunning {
					m.running = now
				}
			}
			mu.Unlock()
		}
	}()
	select {
	case <-synced:
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("the event stream did not sync")
	}
	list := &virtv1alpha1.XenVMList{}
	if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
		return err
	}
	var refs []string
	for i := 0; i < count && i < len(list.Items); i++ {
		vm, err := xc.VMByUUID(ctx, list.Items[i].Status.UUID)
		if err != nil {
			return err
		}
		refs = append(refs, vm.Ref)
		mu.Lock()
		marks[vm.Ref] = &mark{}
		mu.Unlock()
	}
	// Ten at a time, as several operators or admins might.
	if err := harness.Parallel(len(refs), 10, func(i int) error {
		mu.Lock()
		m := marks[refs[i]]
		mu.Unlock()
		if err := xc.HardShutdownVM(ctx, refs[i]); err != nil {
			return err
		}
		mu.Lock()
		m.halted = time.Now()
		mu.Unlock()
		return harness.WaitFor(ctx, 2*time.Minute, func() (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			return !m.running.IsZero(), nil
		})
	}); err != nil {
		return err
	}
	var started, running []float64
	mu.Lock()
	for _, m := range marks {
		started = append(started, m.started.Sub(m.halted).Seconds())
		running = append(running, m.running.Sub(m.halted).Seconds())
	}
	mu.Unlock()
	res.OutOfBandStartedP50, res.OutOfBandStartedP99 = percentile(started, 50), percentile(started, 99)
	res.OutOfBandRunningP50, res.OutOfBandRunningP99 = percentile(running, 50), percentile(running, 99)
	step("Operator: reaction p50 %.3fs p99 %.3fs; back to Running p50 %.3fs p99 %.3fs",
		res.OutOfBandStartedP50, res.OutOfBandStartedP99, res.OutOfBandRunningP50, res.OutOfBandRunningP99)
	return nil
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	i := int(math.Ceil(p/100*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

// scrapeRequests sums rest_client_requests_total from the manager's metrics.
func scrapeRequests(url string) float64 {
	resp, err := http.Get(url) //nolint:gosec // the manager this program started
	if err != nil {
		return -1
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	total := 0.0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "rest_client_requests_total{") {
			fields := strings.Fields(line)
			if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
				total += v
			}
		}
	}
	return total
}

// procUsage reads a process's peak RSS (MiB) and CPU seconds from /proc.
func procUsage(pid int) (float64, float64) {
	rss := procStatusMiB(pid, "VmHWM:")
	cpu := 0.0
	if _, f, ok := procStat(pid); ok && len(f) > 12 {
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cpu = (ut + st) / 100 // USER_HZ
	}
	return rss, cpu
}

// procStat reads /proc/<pid>/stat: the command name, and the fields after
// it (state, ppid, ...; utime is f[11]). The name may hold spaces and
// parentheses, hence the last ")".
func procStat(pid int) (comm string, f []string, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", nil, false
	}
	s := string(data)
	open, end := strings.Index(s, "("), strings.LastIndex(s, ")")
	if open < 0 || end < open || end+2 > len(s) {
		return "", nil, false
	}
	return s[open+1 : end], strings.Fields(s[end+2:]), true
}

// memoryLimitEnv is the GOMEMLIMIT the manager would set itself in a
// container limited to mib MiB (nothing for 0).
func memoryLimitEnv(mib int) []string {
	if mib <= 0 {
		return nil
	}
	return []string{fmt.Sprintf("GOMEMLIMIT=%d", int64(float64(mib)*memlimit.DefaultRatio*(1<<20)))}
}

// anonPeak samples a process's anonymous RSS until stopped; stop returns
// the peak, MiB.
func anonPeak(pid int) (stop func() float64) {
	done := make(chan struct{})
	peak := make(chan float64)
	go func() {
		max := 0.0
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := procStatusMiB(pid, "RssAnon:"); v > max {
				max = v
			}
			select {
			case <-done:
				peak <- max
				return
			case <-tick.C:
			}
		}
	}()
	return func() float64 { close(done); return <-peak }
}
