package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	controllers "github.com/xen-operator/xen-operator/internal/controller"
	"github.com/xen-operator/xen-operator/test/harness"
)

// shardPools are the two pools of the two-shard mode, one simulator each.
var shardPools = []string{"pool-a", "pool-b"}

// ShardRun is one manager of the two-shard mode.
type ShardRun struct {
	// Selector is its --xenhost-selector ("" for the manager doing both).
	Selector string `json:"selector"`
	// Converged counts the XenVMs Running and Ready, by XenHost, once the
	// run converged; Seconds is how long it took from the first create.
	Converged map[string]int `json:"converged_by_xenhost"`
	Seconds   float64        `json:"seconds"`
	// Sessions are the sessions it held on each pool, measured as the drop
	// of the pool's open sessions when it stopped (it logs out on stop).
	Sessions   map[string]int `json:"sessions_by_pool"`
	PeakRSSMiB float64        `json:"peak_rss_mib"`
	CPUSeconds float64        `json:"cpu_seconds"`
}

// ShardResult is the two-shard mode's report.
type ShardResult struct {
	Date     string     `json:"date"`
	Settings Settings   `json:"settings"`
	One      ShardRun   `json:"one_manager"`
	Shards   []ShardRun `json:"shards"`
}

// runShards runs two pools (two simulators) with N/2 XenVMs each: first one
// manager doing both, then two managers with a selector each, one after the
// other on the same control plane and simulators.
func runShards(s Settings, outDir string) error {
	if err := os.MkdirAll(outDir, 0o750); err != nil {
		return err
	}
	ctx := context.Background()
	res := &ShardResult{Date: time.Now().UTC().Format(time.RFC3339), Settings: s}

	step("Starting the local control plane")
	kubeconfig, _ := filepath.Abs(filepath.Join(outDir, "kubeconfig"))
	cp, k8s, err := startControlPlane(ctx, kubeconfig, false)
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()

	ops := fmt.Sprintf("clone=%s,provision=%s,start=%s,clean_shutdown=%s,hard_shutdown=%s,shutdown=%s",
		dur(s.CloneMS), dur(s.ProvisionMS), dur(s.StartMS), dur(s.ShutdownMS), dur(s.ShutdownMS), dur(s.ShutdownMS))
	simURLs := map[string]string{}
	for _, pool := range shardPools {
		step("Starting the simulator of %s", pool)
		sim, urls, err := harness.StartSimulator("bin/xapi-simulator", 1, []string{
			"--latency", dur(s.CallLatencyMS), "--jitter", dur(s.JitterMS), "--op-durations", ops,
			"--boot-delay", dur(s.BootDelayMS), "--host-memory", "64Ti"}, filepath.Join(outDir, "xapi-simulator-"+pool+".log"))
		if err != nil {
			return err
		}
		defer func() { _ = sim.Stop(10 * time.Second) }()
		simURLs[pool] = urls[0]
	}
	ns := "default"
	for _, pool := range shardPools {
		if err := k8s.Create(ctx, harness.SimulatorCredentials(ns, pool+"-credentials")); err != nil {
			return err
		}
		if err := k8s.Create(ctx, harness.SimulatorXenHost(ns, pool, simURLs[pool], pool+"-credentials")); err != nil {
			return err
		}
	}

	one, err := shardRound(ctx, s, k8s, kubeconfig, outDir, ns, simURLs, "one", []string{""})
	if err != nil {
		return fmt.Errorf("one manager: %w", err)
	}
	res.One = one[0]
	selectors := make([]string, 0, len(shardPools))
	for _, pool := range shardPools {
		selectors = append(selectors, controllers.LabelXenHost+"="+pool)
	}
	if res.Shards, err = shardRound(ctx, s, k8s, kubeconfig, outDir, ns, simURLs, "shard", selectors); err != nil {
		return fmt.Errorf("two shards: %w", err)
	}
	return writeShardReport(res, outDir)
}

// shardRound starts one manager per selector, creates N/2 XenVMs on each
// pool, waits for all to run, then deletes them and stops the managers one
// by one, measuring each one's sessions on each pool.
func shardRound(ctx context.Context, s Settings, k8s client.Client, kubeconfig, outDir, ns string,
	simURLs map[string]string, name string, selectors []string) ([]ShardRun, error) {
	runs := make([]ShardRun, len(selectors))
	mgrs := make([]*harness.Process, len(selectors))
	defer func() {
		for _, m := range mgrs {
			if m != nil {
				_ = m.Stop(30 * time.Second)
			}
		}
	}()
	for i, sel := range selectors {
		var args []string
		if sel != "" {
			args = []string{"--xenhost-selector=" + sel}
		}
		step("Round %s: starting a manager with selector %q", name, sel)
		m, _, err := harness.StartManager(harness.ManagerOptions{Bin: managerBin, Kubeconfig: kubeconfig,
			LogPath: filepath.Join(outDir, fmt.Sprintf("manager-%s-%d.log", name, i)), Reconciles: s.Reconciles,
			Operations: s.Concurrency, Args: args})
		if err != nil {
			return nil, err
		}
		mgrs[i] = m
		runs[i] = ShardRun{Selector: sel}
	}
	for _, pool := range shardPools {
		if err := harness.WaitForXenHostReady(ctx, k8s, client.ObjectKey{Namespace: ns, Name: pool}, 60*time.Second); err != nil {
			return nil, fmt.Errorf("XenHost %s did not become Ready: %w", pool, err)
		}
	}

	per := s.N / len(shardPools)
	step("Round %s: applying %d XenVMs on each of %d pools", name, per, len(shardPools))
	t0 := time.Now()
	if err := harness.Parallel(per*len(shardPools), 16, func(i int) error {
		pool := shardPools[i%len(shardPools)]
		return k8s.Create(ctx, &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%s-%04d", name, pool, i/len(shardPools))},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: pool}, Template: "Debian Bookworm 12",
				NetworkInterfaces: []virtv1alpha1.NetworkInterface{{Name: "eth0", Network: benchNetwork}},
				Disks:             []virtv1alpha1.Disk{{Name: virtv1alpha1.RootDiskName, Size: benchRootSizeText}}}})
	}); err != nil {
		return nil, err
	}
	converged := func() (map[string]int, int) {
		list := &virtv1alpha1.XenVMList{}
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, -1
		}
		by, total := map[string]int{}, 0
		for _, vm := range list.Items {
			if vm.Status.PowerState == virtv1alpha1.PowerStateRunning &&
				meta.IsStatusConditionTrue(vm.Status.Conditions, virtv1alpha1.ConditionReady) {
				by[vm.Spec.HostRef.Name]++
				total++
			}
		}
		return by, total
	}
	last := time.Now()
	var by map[string]int
	err := harness.WaitFor(ctx, time.Duration(float64(time.Second)*math.Max(600, 4*lowerBound(s))), func() (bool, error) {
		var n int
		by, n = converged()
		if time.Since(last) > 10*time.Second {
			step("Round %s: %d/%d XenVMs Running and Ready", name, n, per*len(shardPools))
			last = time.Now()
		}
		for _, m := range mgrs {
			if exited, err := m.Exited(); exited {
				return false, fmt.Errorf("a manager exited (%v): %s", err, harness.Tail(m.LogPath, 20))
			}
		}
		return n == per*len(shardPools), nil
	})
	seconds := time.Since(t0).Seconds()
	if err != nil {
		return nil, err
	}
	step("Round %s: %d XenVMs Running and Ready in %.1fs", name, per*len(shardPools), seconds)
	for i := range runs {
		runs[i].Seconds = seconds
		runs[i].Converged = map[string]int{}
		for _, pool := range shardPools {
			if runs[i].Selector == "" || strings.HasSuffix(runs[i].Selector, "="+pool) {
				runs[i].Converged[pool] = by[pool]
			}
		}
	}

	step("Round %s: deleting the XenVMs", name)
	// One by one: a DeleteCollection of a thousand XenVMs can outlast the
	// API server's request timeout on a loaded machine.
	all := &virtv1alpha1.XenVMList{}
	if err := k8s.List(ctx, all, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	if err := harness.Parallel(len(all.Items), 16, func(i int) error {
		return client.IgnoreNotFound(k8s.Delete(ctx, &all.Items[i]))
	}); err != nil {
		return nil, err
	}
	if err := harness.WaitFor(ctx, 20*time.Minute, func() (bool, error) {
		list := &virtv1alpha1.XenVMList{}
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return len(list.Items) == 0, nil
	}); err != nil {
		return nil, err
	}

	for i, m := range mgrs {
		runs[i].PeakRSSMiB, runs[i].CPUSeconds = procUsage(m.Pid())
		before, err := openSessions(simURLs)
		if err != nil {
			return nil, err
		}
		if err := m.Stop(30 * time.Second); err != nil {
			return nil, fmt.Errorf("stopping a manager: %w", err)
		}
		mgrs[i] = nil
		after, err := openSessions(simURLs)
		if err != nil {
			return nil, err
		}
		runs[i].Sessions = map[string]int{}
		for _, pool := range shardPools {
			runs[i].Sessions[pool] = before[pool] - after[pool]
		}
		step("Round %s: manager %q: sessions by pool %v, peak RSS %.0f MiB, CPU %.1fs",
			name, runs[i].Selector, runs[i].Sessions, runs[i].PeakRSSMiB, runs[i].CPUSeconds)
	}
	return runs, nil
}

// openSessions are the sessions open on each pool.
func openSessions(simURLs map[string]string) (map[string]int, error) {
	out := map[string]int{}
	for pool, url := range simURLs {
		st, err := stats(url)
		if err != nil {
			return nil, err
		}
		out[pool] = st.SessionsActive
	}
	return out, nil
}

func writeShardReport(res *ShardResult, outDir string) error {
	base := filepath.Join(outDir, fmt.Sprintf("shards-%d", res.Settings.N))
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", data, 0o600); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Two shards: %d XenVMs on two pools (%s)\n\n", res.Settings.N, res.Date)
	fmt.Fprintf(&b, "One simulator per pool; %d reconciles and %d operations per pool per manager. "+
		"Figures from one run on a shared machine: noisy.\n\n", res.Settings.Reconciles, res.Settings.Concurrency)
	b.WriteString("| manager | converged (by XenHost) | seconds | sessions (by pool) | peak RSS MiB | CPU s |\n|---|---|---|---|---|---|\n")
	row := func(r ShardRun) {
		sel := r.Selector
		if sel == "" {
			sel = "(none: both pools)"
		}
		fmt.Fprintf(&b, "| `%s` | %v | %.1f | %v | %.0f | %.1f |\n", sel, r.Converged, r.Seconds, r.Sessions, r.PeakRSSMiB, r.CPUSeconds)
	}
	row(res.One)
	for _, r := range res.Shards {
		row(r)
	}
	if err := os.WriteFile(base+".md", []byte(b.String()), 0o600); err != nil {
		return err
	}
	fmt.Print(b.String())
	step("Report: %s.md, %s.json", base, base)
	return nil
}
