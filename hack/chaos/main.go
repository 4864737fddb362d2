// Command chaos is the project's fault-injection suite. It applies N XenVMs
// of mixed desired power states at once to the manager (bin/manager, its
// own process) on a simulated pool of two hosts, while the simulator fails
// a share of the calls and loses a share of the answers, its sessions are
// flushed, xapi restarts, connections are refused for a while and the
// manager is SIGKILLed several times mid-install. Then it asserts that
// everything converges within a bound, with exactly one VM per XenVM, no
// orphans, one session and few logins, and that deleting every XenVM leaves
// the pool as it was. It writes a Markdown and JSON report under bin/chaos/
// and exits non-zero on any failed assertion. Run it with `make chaos`.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xapisim"
	"github.com/xen-operator/xen-operator/test/controlplane"
	"github.com/xen-operator/xen-operator/test/harness"
)

// Settings are the suite's parameters.
type Settings struct {
	N        int    `json:"n"`
	Seed     int64  `json:"seed"`
	Revision string `json:"revision"`
	Manager  string `json:"manager"`
	// Args are the flags that replay the run (make chaos CHAOS_ARGS).
	Args        []string `json:"args"`
	Concurrency int      `json:"xenapi_max_concurrent_operations"`
	Reconciles  int      `json:"max_concurrent_reconciles"`

	CallLatencyMS float64 `json:"call_latency_ms"`
	JitterMS      float64 `json:"jitter_ms"`
	CloneMS       float64 `json:"clone_ms"`
	ProvisionMS   float64 `json:"provision_ms"`
	OpMS          float64 `json:"other_operations_ms"`
	BootDelayMS   float64 `json:"boot_delay_ms"`

	FailureRate      float64 `json:"failure_rate"`
	ResponseLossRate float64 `json:"response_loss_rate"`
	Kills            int     `json:"kills"`

	// LowerBoundSeconds is how fast the simulator's durations and the
	// operation cap let the install go without faults; the fault window and
	// the bounds derive from it.
	LowerBoundSeconds  float64 `json:"lower_bound_s"`
	WindowSeconds      float64 `json:"fault_window_s"`
	BoundSeconds       float64 `json:"convergence_bound_s"`
	DeleteBoundSeconds float64 `json:"delete_bound_s"`
}

const (
	namespace  = "chaos"
	hostName   = "pool"
	secretName = "pool-credentials"
)

func main() {
	var s Settings
	var callLatency, jitter, clone, provision, op, boot, bound, deleteBound time.Duration
	flag.IntVar(&s.N, "n", 150, "XenVMs to apply at once.")
	flag.Int64Var(&s.Seed, "seed", 0, "Seed of the fault schedule and the XenVMs' mix (0: a new one, printed).")
	flag.IntVar(&s.Concurrency, "concurrency", 16, "The manager's --xenapi-max-concurrent-operations.")
	flag.IntVar(&s.Reconciles, "reconciles", 16, "The manager's --max-concurrent-reconciles.")
	flag.DurationVar(&callLatency, "call-latency", 2*time.Millisecond, "Simulated latency of every call.")
	flag.DurationVar(&jitter, "jitter", 2*time.Millisecond, "Random extra latency per call, up to this.")
	flag.DurationVar(&clone, "clone", 100*time.Millisecond, "VM.clone duration.")
	flag.DurationVar(&provision, "provision", 300*time.Millisecond, "VM.provision duration.")
	flag.DurationVar(&op, "op", 200*time.Millisecond, "Duration of every other VM operation (start, suspend, shutdown, ...).")
	flag.DurationVar(&boot, "boot-delay", time.Second, "Start to guest agent report.")
	flag.Float64Var(&s.FailureRate, "failure-rate", 0.1, "Share of mutating calls that fail while faults run.")
	flag.Float64Var(&s.ResponseLossRate, "response-loss-rate", 0.02, "Share of mutating calls whose answer is lost while faults run.")
	flag.IntVar(&s.Kills, "kills", 3, "How many times the manager is SIGKILLed mid-install.")
	flag.DurationVar(&bound, "bound", 0, "Convergence bound after the apply (0: derived from N, printed).")
	flag.DurationVar(&deleteBound, "delete-bound", 0, "Bound for deleting every XenVM (0: derived from N, printed).")
	out := flag.String("out", "bin/chaos", "Report folder.")
	flag.StringVar(&s.Manager, "manager", "bin/manager", "The manager binary.")
	flag.Parse()

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	s.CallLatencyMS, s.JitterMS, s.CloneMS, s.ProvisionMS = ms(callLatency), ms(jitter), ms(clone), ms(provision)
	s.OpMS, s.BootDelayMS = ms(op), ms(boot)
	if s.Seed == 0 {
		s.Seed = time.Now().UnixNano()%1_000_000 + 1
	}
	s.Revision = revision()
	derive(&s, bound, deleteBound)
	// The flags that replay this run with make chaos.
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "n" && f.Name != "seed" && f.Name != "out" {
			s.Args = append(s.Args, "-"+f.Name+" "+f.Value.String())
		}
	})
	s.Args = append(s.Args, fmt.Sprintf("-seed %d", s.Seed))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-signals
		fmt.Fprintf(os.Stderr, "chaos: %v: stopping what the suite started\n", sig)
		cleanups.run()
		os.Exit(130)
	}()

	ok, err := run(s, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// derive sets the lower bound, the fault window and the bounds from N and
// the simulator's durations.
//
// The lower bound is the mix's average chain of operations per VM (clone,
// provision, then start, suspend, pause as its state needs), N/concurrency
// chains one after the other. The faults are spread over 2.5 times that,
// and at least 30 s, so that the manager's restarts and xapi's downtime fit.
// The bound on convergence is the window plus twice the lower bound (every
// failed step is retried) plus 60 s: the operator's longest deliberate waits
// are 30 s (after a connection failure) and 30 s (before asking xapi about a
// task it saw no event for).
func derive(s *Settings, bound, deleteBound time.Duration) {
	call := (s.CallLatencyMS + s.JitterMS/2) / 1000
	install := s.CloneMS/1000 + s.ProvisionMS/1000 + 4*call
	op := s.OpMS/1000 + call
	// 50% Running (start), 20% Halted (none), 15% Suspended (start, suspend), 15% Paused (start paused).
	perVM := install + 0.5*op + 0.15*2*op + 0.15*op
	s.LowerBoundSeconds = math.Ceil(float64(s.N)/float64(s.Concurrency)) * perVM
	s.WindowSeconds = math.Max(30, math.Round(2.5*s.LowerBoundSeconds))
	s.BoundSeconds = bound.Seconds()
	if bound == 0 {
		s.BoundSeconds = math.Round(s.WindowSeconds + 2*s.LowerBoundSeconds + 60)
	}
	s.DeleteBoundSeconds = deleteBound.Seconds()
	if deleteBound == 0 {
		// Hard shutdown, the disks and the VM, N/concurrency at a time, twice over, plus 60 s.
		s.DeleteBoundSeconds = math.Round(2*math.Ceil(float64(s.N)/float64(s.Concurrency))*(op+3*call) + 60)
	}
}

// replay is the command that runs the same schedule again.
func (s Settings) replay() string {
	return fmt.Sprintf("make chaos CHAOS_N=%d CHAOS_ARGS=\"%s\"", s.N, strings.Join(s.Args, " "))
}

func revision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func step(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func dur(msv float64) time.Duration { return time.Duration(msv * float64(time.Millisecond)) }

// cleanups stop what the suite started when it is interrupted: the
// manager runs in its own process group, and the control plane's etcd and
// kube-apiserver are processes too.
var cleanups cleanupList

type cleanupList struct {
	mu  sync.Mutex
	fns []func()
}

// add registers fn and returns a function that runs it once, from either path.
func (c *cleanupList) add(fn func()) func() {
	var once sync.Once
	f := func() { once.Do(fn) }
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
	return f
}

// run runs every cleanup, the latest first.
func (c *cleanupList) run() {
	c.mu.Lock()
	fns := append([]func(){}, c.fns...)
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// clock tells the time in seconds after the apply (negative before it).
type clock struct{ base atomic.Int64 }

func (c *clock) mark()        { c.base.Store(time.Now().UnixNano()) }
func (c *clock) now() float64 { return float64(time.Now().UnixNano()-c.base.Load()) / 1e9 }

// rel is t in seconds after the apply.
func (c *clock) rel(t time.Time) float64 { return float64(t.UnixNano()-c.base.Load()) / 1e9 }

// run runs the suite; it reports whether every check passed, and an error
// when the suite itself could not run.
func run(s Settings, outDir string) (bool, error) {
	if err := os.MkdirAll(outDir, 0o750); err != nil {
		return false, err
	}
	res := &Result{Date: time.Now().UTC().Format(time.RFC3339), Settings: s}
	ctx := context.Background()
	var clk clock
	clk.mark()
	step("Fault-injection suite: N=%d, seed %d, revision %s; replay: %s", s.N, s.Seed, s.Revision, s.replay())
	step("Faults over the first %.0fs after the apply; convergence bound %.0fs; delete bound %.0fs (lower bound without faults %.1fs)",
		s.WindowSeconds, s.BoundSeconds, s.DeleteBoundSeconds, s.LowerBoundSeconds)

	step("Starting the local control plane")
	kubeconfig, _ := filepath.Abs(filepath.Join(outDir, "kubeconfig"))
	cp, err := controlplane.Start(controlplane.Options{CRDDirectory: "config/crd/bases", KubeconfigPath: kubeconfig})
	if err != nil {
		return false, err
	}
	defer cleanups.add(func() { _ = cp.Stop() })()
	k8s, err := harness.NewClient(cp.Config)
	if err != nil {
		return false, err
	}

	step("Starting the simulator in-process: 2 hosts; latency %s+%s per call, clone %s, provision %s, other operations %s, boot %s",
		dur(s.CallLatencyMS), dur(s.JitterMS), dur(s.CloneMS), dur(s.ProvisionMS), dur(s.OpMS), dur(s.BootDelayMS))
	sim, err := xapisim.New(xapisim.Config{Hosts: 2, Latency: dur(s.CallLatencyMS), Jitter: dur(s.JitterMS),
		OpDuration: dur(s.OpMS), OpDurations: map[string]time.Duration{"clone": dur(s.CloneMS), "provision": dur(s.ProvisionMS)},
		BootDelay: dur(s.BootDelayMS), HostMemory: 64 << 40})
	if err != nil {
		return false, err
	}
	defer cleanups.add(sim.Close)()

	sup := newSupervisor(harness.ManagerOptions{Bin: s.Manager, Kubeconfig: kubeconfig,
		Reconciles: s.Reconciles, Operations: s.Concurrency}, outDir, clk.rel)
	step("Starting %s (%d reconciles, %d operations per pool)", s.Manager, s.Reconciles, s.Concurrency)
	if err := sup.start(); err != nil {
		return false, err
	}
	var stopErr error
	stopManager := cleanups.add(func() { stopErr = sup.stop(30 * time.Second) })
	defer stopManager()

	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return false, err
	}
	if err := k8s.Create(ctx, harness.SimulatorCredentials(namespace, secretName)); err != nil {
		return false, err
	}
	host := harness.SimulatorXenHost(namespace, hostName, sim.URL(), secretName)
	if err := k8s.Create(ctx, host); err != nil {
		return false, err
	}
	if err := harness.WaitForXenHostReady(ctx, k8s, client.ObjectKeyFromObject(host), 60*time.Second); err != nil {
		return false, fmt.Errorf("the XenHost did not become Ready: %w", err)
	}
	step("XenHost %s/%s is Ready (%s)", namespace, hostName, sim.URL())

	pre := sim.Snapshot()
	preVDIs := map[string]bool{}
	for _, v := range pre.VDIs {
		preVDIs[v.Ref] = true
	}
	res.VDIsBefore = len(pre.VDIs)
	before := sim.Stats()

	objs := xenVMs(s)
	res.Mix = mixOf(objs)
	faults := plan(s.Seed, s.Kills, time.Duration(s.WindowSeconds*float64(time.Second)))
	res.Faults = faults
	step("XenVMs: %s", res.Mix)
	for _, f := range faults[1:] {
		step("Planned: %-7s at %5.1fs or at %2.0f%% converged: %s", f.Kind, f.At, 100*f.AtConverged, f.What(s))
	}

	step("Applying %d XenVMs at once", s.N)
	uids := map[string]string{}
	clk.mark()
	if err := harness.Parallel(len(objs), 16, func(i int) error { return k8s.Create(ctx, objs[i]) }); err != nil {
		return false, err
	}
	res.ApplySeconds = clk.now()
	withDevices := map[string]bool{}
	for _, o := range objs {
		uids[string(o.UID)] = o.Name
		withDevices[string(o.UID)] = len(o.Spec.Disks) > 0
	}
	interval := 250 * time.Millisecond
	if s.N > 200 {
		interval = 500 * time.Millisecond // listing and checking every XenVM takes its time
	}
	smp := startSampler(ctx, interval, clk.now, k8s, namespace, sim, uids)
	runFaults(ctx, s, k8s, faults, sim, sup, smp, &clk, res)
	res.PendingAtFaultsEnd = pending(ctx, k8s, sim, uids)

	converge(ctx, s, k8s, sim, uids, sup, &clk, res)
	// Let the last tasks be destroyed and the last status be written.
	time.Sleep(2 * time.Second)
	atConvergence := sim.Stats()
	snap := sim.Snapshot()
	faults[len(faults)-1].closeWindow(res.ConvergedAt, atConvergence)
	check(s, res, snap, uids, preVDIs, atConvergence, sup)
	checkDevices(res, snap, uids, withDevices)

	deleteAll(ctx, s, k8s, sim, preVDIs, res)
	res.Samples = smp.stop()
	fillWindows(faults, res.Samples)

	step("Stopping the manager (SIGTERM)")
	stopManager()
	checkShutdown(res, sim, sup, stopErr)
	res.Runs = sup.history()
	res.CallsByMethod, res.CallsTotal = callsBetween(before, atConvergence)
	res.Logins = countersOf(atConvergence).logins - countersOf(before).logins
	res.AnswersLost, res.FailuresInjected = atConvergence.ResponsesLost, atConvergence.FailuresInjected

	if err := writeReport(res, outDir); err != nil {
		return false, err
	}
	return res.Passed(), nil
}

// xenVMs are the N XenVMs of the run: 50% Running, 20% Halted, 15%
// Suspended, 15% Paused, in a seeded order, on the templates whose guests
// have an agent, a quarter of them powered off Hard.
func xenVMs(s Settings) []*virtv1alpha1.XenVM {
	r := rand.New(rand.NewSource(s.Seed + 1)) //nolint:gosec // a reproducible mix, not a secret
	templates := []string{"Debian Bookworm 12", "Ubuntu Jammy Jellyfish 22.04", "Rocky Linux 9", "CentOS Stream 9",
		"Windows Server 2022 (64-bit)", "Windows 10 (64-bit)"}
	n := s.N
	halted, suspended := int(math.Round(0.2*float64(n))), int(math.Round(0.15*float64(n)))
	paused := int(math.Round(0.15 * float64(n)))
	states := make([]virtv1alpha1.PowerState, 0, n)
	for i := range n {
		switch {
		case i < halted:
			states = append(states, virtv1alpha1.PowerStateHalted)
		case i < halted+suspended:
			states = append(states, virtv1alpha1.PowerStateSuspended)
		case i < halted+suspended+paused:
			states = append(states, virtv1alpha1.PowerStatePaused)
		default:
			states = append(states, virtv1alpha1.PowerStateRunning)
		}
	}
	r.Shuffle(n, func(i, j int) { states[i], states[j] = states[j], states[i] })
	out := make([]*virtv1alpha1.XenVM, n)
	for i := range n {
		vm := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("vm-%04d", i)},
			Spec: virtv1alpha1.XenVMSpec{
				HostRef:    virtv1alpha1.LocalObjectReference{Name: hostName},
				Template:   templates[r.Intn(len(templates))],
				PowerState: states[i],
			},
		}
		if r.Intn(4) == 0 {
			vm.Spec.PowerOffMode = virtv1alpha1.PowerOffHard
		}
		if i%3 == 0 {
			// Devices too, created exactly once whatever the faults: an
			// interface and a data disk.
			vm.Spec.NetworkInterfaces = []virtv1alpha1.NetworkInterface{{Name: "eth0", Network: chaosNetwork}}
			vm.Spec.Disks = []virtv1alpha1.Disk{{Name: chaosDisk, Size: "1Gi"}}
		}
		out[i] = vm
	}
	return out
}

// The devices every third XenVM declares.
const (
	chaosNetwork = "Pool-wide network associated with eth0"
	chaosDisk    = "data"
)

func mixOf(objs []*virtv1alpha1.XenVM) string {
	counts := map[virtv1alpha1.PowerState]int{}
	hard := 0
	templates := map[string]bool{}
	for _, o := range objs {
		counts[o.Spec.PowerState]++
		if o.Spec.PowerOffMode == virtv1alpha1.PowerOffHard {
			hard++
		}
		templates[o.Spec.Template] = true
	}
	devices := 0
	for _, o := range objs {
		if len(o.Spec.Disks) > 0 {
			devices++
		}
	}
	return fmt.Sprintf("%d Running, %d Halted, %d Suspended, %d Paused; %d templates; %d with powerOffMode Hard; %d with an interface and a data disk",
		counts[virtv1alpha1.PowerStateRunning], counts[virtv1alpha1.PowerStateHalted], counts[virtv1alpha1.PowerStateSuspended],
		counts[virtv1alpha1.PowerStatePaused], len(templates), hard, devices)
}

// runFaults runs the schedule: the calls fault from the start, then each
// other fault at its time or its share of XenVMs converged, whichever comes
// first, one after the other; the calls fault ends with the last.
func runFaults(ctx context.Context, s Settings, k8s client.Client, faults []*Fault, sim *xapisim.Server, sup *supervisor,
	smp *sampler, clk *clock, res *Result) {
	rc := sim.Runtime()
	rc.FailureRate, rc.ResponseLossRate = s.FailureRate, s.ResponseLossRate
	sim.SetRuntime(rc)
	calls := faults[0]
	calls.Fired, calls.FiredAt, calls.Trigger = true, 0, "time"
	calls.stats = sim.Stats()

	// Each fault gets a window of its own, however fast the install goes:
	// once the previous one is over (the manager back, xapi serving again),
	// the next waits until one more XenVM has converged, or a second if
	// none does, so that the manager it hits is at work; then, but for a
	// flush, until xapi has an operation in flight (up to 30 s).
	var prev *Fault
	over, base := 0.0, 0
	for _, f := range faults[1:] {
		for {
			now, done := clk.now(), smp.latest().Converged
			if done > base || now >= over+1 {
				if now >= f.At {
					f.Trigger = "time"
					break
				}
				if float64(done) >= f.AtConverged*float64(s.N) {
					f.Trigger = "progress"
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		inFlight := 0
		if f.Kind != faultFlush {
			// A fault is nastiest with operations under way: wait for one
			// (the operator may be idle, waiting out a previous fault).
			for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(10 * time.Millisecond) {
				if inFlight = sim.Stats().OperationsInFlight; inFlight > 0 || smp.latest().Converged == s.N {
					break
				}
			}
		}
		f.Fired, f.FiredAt, f.Before, f.InFlight = true, clk.now(), smp.latest().Converged, inFlight
		f.stats = sim.Stats()
		if prev != nil {
			prev.closeWindow(f.FiredAt, f.stats)
		}
		prev = f
		step("Fault: %-7s at %5.1fs (%s), %d/%d converged, %d operations in flight: %s", f.Kind, f.FiredAt, f.Trigger, f.Before, s.N,
			inFlight, f.What(s))
		d := time.Duration(f.Param * float64(time.Second))
		switch f.Kind {
		case faultKill:
			note, err := sup.kill(d)
			f.Note = note
			if err != nil {
				f.Note = "starting the manager again failed: " + err.Error()
			}
		case faultFlush:
			sim.FlushSessions()
		case faultRestart:
			// The restart loses every task: count first those the operator
			// left undestroyed.
			res.TasksLeakedBeforeRestart = leakedTasks(ctx, k8s, sim)
			sim.Restart(d)
			f.Note = waitServing(sim, d)
		case faultRefuse:
			sim.Refuse(d)
			f.Note = waitServing(sim, d)
		}
		over, base = clk.now(), smp.latest().Converged
		f.Over = over
	}
	rc = sim.Runtime()
	rc.FailureRate, rc.ResponseLossRate = 0, 0
	sim.SetRuntime(rc)
	calls.Over = clk.now()
	calls.closeWindow(calls.Over, sim.Stats())
	step("Faults over at %.1fs: %d/%d converged", clk.now(), smp.latest().Converged, s.N)
}

// waitServing waits for the simulator's hosts to accept connections again
// after a downtime of d, so that the next fault does not fall into it.
func waitServing(sim *xapisim.Server, d time.Duration) string {
	time.Sleep(d)
	start := time.Now()
	for _, u := range sim.URLs() {
		addr := strings.TrimPrefix(u, "http://")
		for time.Since(start) < 30*time.Second {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = conn.Close()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The simulator clears its refusing state just after listening again.
	time.Sleep(100 * time.Millisecond)
	return fmt.Sprintf("serving again %.1fs after the downtime", time.Since(start).Seconds())
}

// leakedTasks lists the completed tasks that no XenVM's status.operation
// names: nobody will destroy them.
func leakedTasks(ctx context.Context, k8s client.Client, sim *xapisim.Server) []string {
	snap := sim.Snapshot()
	objs, err := listXenVMs(ctx, k8s, namespace)
	if err != nil {
		return []string{"listing the XenVMs: " + err.Error()}
	}
	followed := map[string]bool{}
	for _, o := range objs {
		if op := o.Status.Operation; op != nil {
			followed[op.TaskRef] = true
		}
	}
	var out []string
	for _, t := range snap.Tasks {
		if t.Status != "pending" && !followed[t.Ref] {
			out = append(out, t.NameLabel+" "+t.Status)
		}
	}
	return out
}

// pending describes the XenVMs that have not converged.
func pending(ctx context.Context, k8s client.Client, sim *xapisim.Server, uids map[string]string) []string {
	objs, err := listXenVMs(ctx, k8s, namespace)
	if err != nil {
		return []string{"listing the XenVMs: " + err.Error()}
	}
	view := viewOf(sim.Snapshot(), uids)
	var out []string
	for i := range objs {
		if !converged(&objs[i], &view) {
			out = append(out, evidence(&objs[i], &view))
		}
	}
	return out
}

// sessionsSince counts the operator's sessions on the pool logged in since t.
func sessionsSince(sim *xapisim.Server, t time.Time) int {
	n := 0
	for _, sess := range sim.Snapshot().Sessions {
		if strings.HasPrefix(sess.Originator, operatorOriginator) && !sess.LoggedIn.Before(t) {
			n++
		}
	}
	return n
}

// hostReady describes the XenHost if it is not Ready, "" if it is.
func hostReady(ctx context.Context, k8s client.Client) string {
	h := &virtv1alpha1.XenHost{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: hostName}, h); err != nil {
		return "XenHost: " + err.Error()
	}
	c := meta.FindStatusCondition(h.Status.Conditions, virtv1alpha1.ConditionReady)
	switch {
	case c == nil:
		return "XenHost " + hostName + ": no Ready condition"
	case c.Status != metav1.ConditionTrue:
		return fmt.Sprintf("XenHost %s: Ready=%s %s %q (since %s)", hostName, c.Status, c.Reason, c.Message,
			c.LastTransitionTime.UTC().Format(time.TimeOnly))
	}
	return ""
}

// converge waits until every XenVM has converged, the simulator agreeing,
// the XenHost is Ready and the running manager holds a session on the pool
// (connected again after xapi's restart), up to the bound
// and half as long again (at least a minute), so that a slow convergence is
// still measured.
func converge(ctx context.Context, s Settings, k8s client.Client, sim *xapisim.Server, uids map[string]string,
	sup *supervisor, clk *clock, res *Result) {
	limit := s.BoundSeconds + math.Max(60, s.BoundSeconds/2)
	last := time.Now()
	for {
		objs, err := listXenVMs(ctx, k8s, namespace)
		if err == nil {
			stuck := pending(ctx, k8s, sim, uids)
			var blockers []string
			if hostErr := hostReady(ctx, k8s); hostErr != "" {
				blockers = append(blockers, hostErr)
			}
			if n := sessionsSince(sim, sup.lastStart()); n == 0 {
				blockers = append(blockers, "the running manager holds no session on the pool")
			}
			now := clk.now()
			if len(stuck) == 0 && len(blockers) == 0 && len(objs) == s.N {
				res.Converged, res.ConvergedAt = true, now
				step("Converged: %d/%d XenVMs Ready in their power state, the simulator agreeing, the XenHost Ready, "+
					"the manager connected, %.1fs after the apply", s.N, s.N, now)
				return
			}
			if time.Since(last) > 10*time.Second {
				step("Converging: %d/%d at %.0fs (%s)%s", len(objs)-len(stuck), s.N, now, conditionSummary(objs),
					strings.Join(append([]string{""}, blockers...), "; "))
				last = time.Now()
			}
			if now > limit {
				res.ConvergedAt, res.Stuck, res.Blockers = now, stuck, blockers
				step("Not converged %.0fs after the apply: %d XenVMs stuck%s", now, len(stuck), strings.Join(append([]string{""}, blockers...), "; "))
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// deleteAll deletes every XenVM and checks that the pool is left as it was.
func deleteAll(ctx context.Context, s Settings, k8s client.Client, sim *xapisim.Server, preVDIs map[string]bool, res *Result) {
	step("Deleting the %d XenVMs", s.N)
	t0 := time.Now()
	before := sim.Stats()
	err := k8s.DeleteAllOf(ctx, &virtv1alpha1.XenVM{}, client.InNamespace(namespace))
	left := 0
	if err == nil {
		err = harness.WaitFor(ctx, time.Duration(2*s.DeleteBoundSeconds*float64(time.Second)), func() (bool, error) {
			objs, err := listXenVMs(ctx, k8s, namespace)
			left = len(objs)
			return err == nil && left == 0, nil
		})
	}
	res.DeleteSeconds = time.Since(t0).Seconds()
	after := sim.Stats()
	res.DeleteCalls, _ = callsBetween(before, after)
	snap := sim.Snapshot()
	guests, installs := 0, 0
	var leftovers []string
	for _, vm := range snap.VMs {
		if vm.IsControlDomain {
			continue
		}
		if !vm.IsTemplate || strings.HasPrefix(vm.NameLabel, installPrefix) {
			if vm.IsTemplate {
				installs++
			} else {
				guests++
			}
			leftovers = append(leftovers, fmt.Sprintf("%s %q %s (owner %s)", vm.UUID, vm.NameLabel, vm.PowerState, ownerOf(vm)))
		}
	}
	newVDIs := 0
	for _, v := range snap.VDIs {
		if !preVDIs[v.Ref] {
			newVDIs++
		}
	}
	res.VDIsAfterDelete = len(snap.VDIs)
	gone := err == nil && left == 0
	why := ""
	if err != nil {
		why = err.Error()
	}
	res.add("clean delete: every XenVM gone within the bound",
		fmt.Sprintf("all %d gone in <= %.0fs", s.N, s.DeleteBoundSeconds),
		fmt.Sprintf("%d left after %.1fs", left, res.DeleteSeconds),
		gone && res.DeleteSeconds <= s.DeleteBoundSeconds, why)
	res.add("clean delete: the pool as before the run",
		fmt.Sprintf("0 VMs, 0 install templates, %d VDIs", res.VDIsBefore),
		fmt.Sprintf("%d VMs, %d install templates, %d VDIs (%d new)", guests, installs, len(snap.VDIs), newVDIs),
		guests == 0 && installs == 0 && len(snap.VDIs) == res.VDIsBefore && newVDIs == 0,
		strings.Join(leftovers, "; "))
	step("Deleted in %.1fs: %d XenVMs left, %d VMs and %d install templates left in the pool, %d VDIs (%d before)",
		res.DeleteSeconds, left, guests, installs, len(snap.VDIs), res.VDIsBefore)
}

func callsBetween(before, after xapisim.Stats) (map[string]int, int) {
	out := map[string]int{}
	total := 0
	for m, n := range after.Calls {
		if d := n - before.Calls[m]; d > 0 {
			out[m] = d
			total += d
		}
	}
	return out, total
}
