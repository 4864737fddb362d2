package xenapi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xen-operator/xen-operator/internal/xapisim"
)

const password = "xenserver"

func newSim(t testing.TB, cfg xapisim.Config) *xapisim.Server {
	t.Helper()
	if cfg.AuthFailureDelay == 0 {
		cfg.AuthFailureDelay = 10 * time.Millisecond
	}
	s, err := xapisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newSessions(t testing.TB, opts Options) *Sessions {
	t.Helper()
	if opts.LoginBackoff == 0 {
		opts.LoginBackoff = 200 * time.Millisecond
	}
	if opts.EventTimeout == 0 {
		opts.EventTimeout = 2 * time.Second
	}
	if opts.TaskPollInterval == 0 {
		opts.TaskPollInterval = 500 * time.Millisecond
	}
	p := NewSessions(opts)
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func endpoint(url string) Endpoint { return Endpoint{URL: url, Username: "root", Password: password} }

func mustClient(t testing.TB, p *Sessions, owner string, ep Endpoint) *Client {
	t.Helper()
	c, err := p.Client(owner, ep)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// install clones a template, points its disks at the default SR and
// provisions it, as the operator will.
func install(ctx context.Context, g Gomega, c *Client, template, name string) *VM {
	tmpls, err := c.VMsByName(ctx, template)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tmpls).To(HaveLen(1))
	ref, err := c.CloneVM(ctx, tmpls[0].Ref, name)
	g.Expect(err).NotTo(HaveOccurred())
	pool, err := c.PoolRecord(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	sr, err := c.SR(ctx, pool.DefaultSR)
	g.Expect(err).NotTo(HaveOccurred())
	vm, err := c.VM(ctx, ref)
	g.Expect(err).NotTo(HaveOccurred())
	oc := vm.OtherConfig
	oc["disks"] = strings.ReplaceAll(oc["disks"], `sr=""`, `sr="`+sr.UUID+`"`)
	g.Expect(c.SetVMOtherConfig(ctx, ref, oc)).To(Succeed())
	g.Expect(c.ProvisionVM(ctx, ref)).To(Succeed())
	vm, err = c.VM(ctx, ref)
	g.Expect(err).NotTo(HaveOccurred())
	return vm
}

func TestOneLoginForManyCallers(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{Latency: 20 * time.Millisecond})
	p := newSessions(t, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every caller asks the pool for the client, as every reconcile will.
			c, err := p.Client(fmt.Sprintf("owner-%d", i%7), endpoint(s.URL()))
			if err != nil {
				failed.Add(1)
				return
			}
			if _, err := c.VMs(ctx); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	g.Expect(failed.Load()).To(BeZero())
	st := s.Stats()
	g.Expect(st.LoginsTotal).To(Equal(int64(1)))
	g.Expect(st.SessionsActive).To(Equal(1))
	g.Expect(st.Calls).To(HaveKeyWithValue("session.login_with_password", 1))
}

func TestSessionFlushMeansOneRelogin(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{Latency: 5 * time.Millisecond})
	p := newSessions(t, Options{})
	c := mustClient(t, p, "host", endpoint(s.URL()))
	ctx := context.Background()
	_, err := c.VMs(ctx)
	g.Expect(err).NotTo(HaveOccurred())

	s.FlushSessions()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.PoolRecord(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	g.Expect(errs).To(BeEmpty(), "no call fails")
	g.Expect(s.Stats().LoginsTotal).To(Equal(int64(2)), "exactly one re-login")
	g.Expect(c.Logins()).To(Equal(2))
}

func TestPoolMemberRedirectsToCoordinator(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{Hosts: 3})
	p := newSessions(t, Options{})
	c := mustClient(t, p, "member", endpoint(s.URLs()[2]))
	hosts, err := c.Hosts(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(hosts).To(HaveLen(3))
	g.Expect(c.Coordinator()).To(Equal(s.URL()))
	g.Expect(c.Endpoint()).To(Equal(s.URLs()[2]))
	g.Expect(s.Stats().LoginsTotal).To(Equal(int64(1)))
}

func TestWrongPassword(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{})
	var logs strings.Builder
	var mu sync.Mutex
	logger := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logs.WriteString(prefix + args + "\n")
	}, funcr.Options{Verbosity: 5})
	p := newSessions(t, Options{LoginBackoff: 300 * time.Millisecond, Logger: logger})
	ep := endpoint(s.URL())
	ep.Password = "not-the-password"
	c := mustClient(t, p, "host", ep)
	ctx := context.Background()

	_, err := c.VMs(ctx)
	g.Expect(IsAuthenticationFailed(err)).To(BeTrue(), "got %v", err)
	g.Expect(IsNotFound(err)).To(BeFalse())
	xe, ok := AsError(err)
	g.Expect(ok).To(BeTrue())
	g.Expect(xe.Params).To(Equal([]string{"root", "Authentication failure"}))

	// Many callers for a second: the login is retried with backoff, not in a loop.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		_, err := c.PoolRecord(ctx)
		g.Expect(IsAuthenticationFailed(err)).To(BeTrue())
		time.Sleep(10 * time.Millisecond)
	}
	failed := s.Stats().LoginsFailed
	g.Expect(failed).To(BeNumerically("<=", 3), "300ms, then 600ms: at most 3 attempts in a second")
	g.Expect(failed).To(BeNumerically(">=", 2), "the login is retried")

	mu.Lock()
	defer mu.Unlock()
	g.Expect(logs.String()).To(ContainSubstring("XenAPI login failed"))
	g.Expect(logs.String()).NotTo(ContainSubstring("not-the-password"))
	g.Expect(err.Error()).NotTo(ContainSubstring("not-the-password"))
}

func TestEmptyStringsDecodeWhole(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{})
	p := newSessions(t, Options{})
	c := mustClient(t, p, "host", endpoint(s.URL()))
	ctx := context.Background()
	vms, err := c.VMs(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(vms).To(HaveLen(8), "7 templates and the control domain: no record lost")
	for _, vm := range vms {
		// PV_kernel, PV_args and friends are empty strings on the wire: the
		// fields after them must still be there.
		g.Expect(vm.UUID).NotTo(BeEmpty())
		g.Expect(vm.PowerState).NotTo(BeEmpty())
		g.Expect(vm.Metrics).To(HavePrefix("OpaqueRef:"))
		g.Expect(vm.MemoryStaticMax).To(BeNumerically(">", 0))
	}
	tmpls, err := c.VMsByName(ctx, "CentOS Stream 9")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.SetVMNameDescription(ctx, tmpls[0].Ref, "")).To(Succeed())
	vm, err := c.VM(ctx, tmpls[0].Ref)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(vm.NameDescription).To(BeEmpty())
	g.Expect(vm.OtherConfig).NotTo(BeEmpty(), "fields after an empty string are decoded")
}

// TestWatcherEndsEveryPoll: each event.from call's events end with OpPolled,
// even a call that returned none, naming the classes of its stream; once a
// subscriber has the OpPolled of a call made after a write returned, it has
// the write's event.
func TestWatcherEndsEveryPoll(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{})
	c := mustClient(t, newSessions(t, Options{EventTimeout: 200 * time.Millisecond}), "host", endpoint(s.URL()))
	ctx := context.Background()
	tmpls, err := c.VMsByName(ctx, "Debian Bookworm 12")
	g.Expect(err).NotTo(HaveOccurred())
	sub, err := c.Subscribe()
	g.Expect(err).NotTo(HaveOccurred())
	defer sub.Close()
	next := func() Event {
		var e Event
		g.Eventually(sub.Events(), 5*time.Second).Should(Receive(&e))
		return e
	}
	// Both streams' full syncs, each ending with its call's OpPolled.
	synced := map[string]bool{}
	for len(synced) < len(streams) {
		e := next()
		if e.Op == OpSynced {
			g.Expect(synced).NotTo(HaveKey(e.Classes[0]))
			synced[e.Classes[0]] = true
			p := next()
			g.Expect(p.Op).To(Equal(OpPolled), "the full sync's call ends too")
			g.Expect(p.Classes).To(Equal(e.Classes))
		}
	}
	// Nothing changes: the calls time out empty, every 200 ms (the
	// pool-wide classes' at most once a second).
	polls := map[string]int{}
	for start := time.Now(); time.Since(start) < 2*time.Second; {
		e := next()
		g.Expect(e.Op).To(Equal(OpPolled), "nothing changed, %s %s %s", e.Class, e.Op, e.Ref)
		polls[e.Classes[0]]++
	}
	g.Expect(polls[objectClasses[0]]).To(BeNumerically(">=", 6), "calls that returned nothing end too")
	g.Expect(polls[poolClasses[0]]).To(BeNumerically("~", 2, 1))

	g.Expect(c.SetVMNameDescription(ctx, tmpls[0].Ref, "written")).To(Succeed())
	wrote := time.Now()
	var seen *VM
	for {
		e := next()
		if e.Class == ClassVM && e.Ref == tmpls[0].Ref {
			seen = e.VM()
		}
		if e.Op == OpPolled && e.Covers(ClassVM) && e.Time.After(wrote) {
			break
		}
	}
	g.Expect(seen).NotTo(BeNil(), "the write's event came before the end of a call made after it")
	g.Expect(seen.NameDescription).To(Equal("written"))
}

// TestPoolRecordsComeOncePerSecond: the hosts, SRs and networks, whose
// records list every VM, disk and interface of the pool, are polled in a
// stream of their own at most once a second however often they change;
// the VMs are polled as fast as they change, in calls that never carry the
// pool's records.
func TestPoolRecordsComeOncePerSecond(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{})
	c := mustClient(t, newSessions(t, Options{}), "host", endpoint(s.URL()))
	ctx := context.Background()
	vm := install(ctx, g, c, "Debian Bookworm 12", "churn")
	hosts, err := c.Hosts(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	sub, err := c.Subscribe()
	g.Expect(err).NotTo(HaveOccurred())
	defer sub.Close()
	synced := 0
	for synced < len(streams) {
		var e Event
		g.Eventually(sub.Events(), 5*time.Second).Should(Receive(&e))
		if e.Op == OpSynced {
			synced++
		}
	}

	// Another tool renames the host and the VM forty times in two seconds.
	session := rawLogin(t, s.URL())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 40 {
			rawCall(t, s.URL(), "host.set_name_label", session, hosts[0].Ref, fmt.Sprintf("host-%d", i))
			rawCall(t, s.URL(), "VM.set_name_label", session, vm.Ref, fmt.Sprintf("vm-%d", i))
			time.Sleep(50 * time.Millisecond)
		}
	}()
	polls := map[string]int{}
	var lastHost, lastVM string
	inPoll := map[string]bool{}
	deadline := time.After(4 * time.Second)
	for open := true; open; {
		select {
		case e := <-sub.Events():
			switch {
			case e.Op == OpPolled:
				for class := range inPoll {
					g.Expect(e.Covers(class)).To(BeTrue(), "a %s event in a call about %v", class, e.Classes)
				}
				inPoll = map[string]bool{}
				polls[e.Classes[0]]++
			case e.Class == ClassHost:
				lastHost, inPoll[ClassHost] = e.Object.(*Host).NameLabel, true
			case e.Class == ClassVM && e.Ref == vm.Ref:
				lastVM, inPoll[ClassVM] = e.VM().NameLabel, true
			}
		case <-deadline:
			open = false
		}
	}
	<-done
	g.Expect(lastHost).To(Equal("host-39"), "the host's last change arrives")
	g.Expect(lastVM).To(Equal("vm-39"))
	g.Expect(polls[poolClasses[0]]).To(BeNumerically("<=", 5), "about one call a second for the pool's records")
	g.Expect(polls[objectClasses[0]]).To(BeNumerically(">=", 10), "the VMs' calls follow the changes")
}

func TestWatcherSeesOutOfBandChanges(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{})
	p := newSessions(t, Options{})
	c := mustClient(t, p, "host", endpoint(s.URL()))
	ctx := context.Background()
	vm := install(ctx, g, c, "Debian Bookworm 12", "watched")
	g.Expect(c.StartVM(ctx, vm.Ref, false)).To(Succeed())

	sub, err := c.Subscribe()
	g.Expect(err).NotTo(HaveOccurred())
	defer sub.Close()
	// The initial sync: every object, then OpSynced.
	g.Eventually(sub.Events(), 5*time.Second).Should(Receive(HaveField("Op", OpSynced)))

	// Another tool halts the VM.
	other := mustClient(t, newSessions(t, Options{Originator: "other-tool"}), "x", endpoint(s.URL()))
	start := time.Now()
	g.Expect(other.HardShutdownVM(ctx, vm.Ref)).To(Succeed())
	var seen *VM
	g.Eventually(func() PowerState {
		select {
		case e := <-sub.Events():
			if e.Class == ClassVM && e.Ref == vm.Ref {
				seen = e.VM()
			}
		default:
		}
		if seen == nil {
			return ""
		}
		return seen.PowerState
	}, time.Second, 5*time.Millisecond).Should(Equal(PowerStateHalted))
	g.Expect(time.Since(start)).To(BeNumerically("<", time.Second))
	g.Expect(seen.UUID).To(Equal(vm.UUID))
}

func TestCloseLeavesNoSession(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{Hosts: 2})
	p := NewSessions(Options{})
	for i, u := range s.URLs() {
		c := mustClient(t, p, fmt.Sprint(i), endpoint(u))
		_, err := c.PoolRecord(context.Background())
		g.Expect(err).NotTo(HaveOccurred())
		_, err = c.Subscribe()
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(s.Stats().SessionsActive).To(Equal(2))
	p.Close(context.Background())
	g.Expect(s.Stats().SessionsActive).To(BeZero())
	g.Expect(s.Stats().LogoutsTotal).To(Equal(int64(2)))
	_, err := p.Client("late", endpoint(s.URL()))
	g.Expect(err).To(MatchError(ErrClosed))
}

func TestCredentialChangeLogsTheOldSessionOut(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{})
	p := newSessions(t, Options{})
	ctx := context.Background()
	old := mustClient(t, p, "ns/pool-a", endpoint(s.URL()))
	_, err := old.PoolRecord(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	shared := mustClient(t, p, "ns/pool-b", endpoint(s.URL()))
	g.Expect(shared).To(BeIdenticalTo(old), "same endpoint and credentials share the session")

	rotated := endpoint(s.URL())
	rotated.CABundle = nil
	rotated.Username = "root"
	rotated.Password = password // same secret for pool-b
	g.Expect(mustClient(t, p, "ns/pool-b", rotated)).To(BeIdenticalTo(old))

	// pool-a switches to other credentials: the session stays for pool-b.
	wrong := endpoint(s.URL())
	wrong.Password = "rotated"
	_ = mustClient(t, p, "ns/pool-a", wrong)
	g.Expect(s.Stats().SessionsActive).To(Equal(1))
	// pool-b goes too: nobody uses the old session, it is logged out.
	p.Release(ctx, "ns/pool-b")
	g.Expect(s.Stats().SessionsActive).To(BeZero())
	g.Expect(s.Stats().LogoutsTotal).To(Equal(int64(1)))
	_, err = old.PoolRecord(ctx)
	g.Expect(err).To(MatchError(ErrClosed))
}

func TestSimulatorRestartIsSurvived(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{})
	p := newSessions(t, Options{})
	c := mustClient(t, p, "host", endpoint(s.URL()))
	ctx := context.Background()
	vm := install(ctx, g, c, "Debian Bookworm 12", "survivor")
	sub, err := c.Subscribe()
	g.Expect(err).NotTo(HaveOccurred())
	defer sub.Close()
	g.Eventually(sub.Events(), 5*time.Second).Should(Receive(HaveField("Op", OpSynced)))

	s.Restart(500 * time.Millisecond)
	_, err = c.VM(ctx, vm.Ref)
	g.Expect(IsConnectionError(err)).To(BeTrue(), "while xapi is down: %v", err)
	g.Expect(IsNotFound(err)).To(BeFalse(), "a connection failure is never 'not found'")

	g.Eventually(func() error {
		_, err := c.VM(ctx, vm.Ref)
		return err
	}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
	g.Expect(s.Stats().LoginsTotal).To(Equal(int64(2)))

	// The watcher resyncs in full once xapi is back.
	g.Eventually(func() bool {
		for {
			select {
			case e := <-sub.Events():
				if e.Op == OpSynced {
					return true
				}
			default:
				return false
			}
		}
	}, 40*time.Second, 50*time.Millisecond).Should(BeTrue())
	g.Expect(c.StartVM(ctx, vm.Ref, false)).To(Succeed())
}

func TestAsync(t *testing.T) {
	s := newSim(t, xapisim.Config{OpDurations: map[string]time.Duration{"copy": 300 * time.Millisecond}})
	p := newSessions(t, Options{TaskPollInterval: time.Hour}) // results must come through events
	c := mustClient(t, p, "host", endpoint(s.URL()))
	ctx := context.Background()

	t.Run("a typed result, and the task is destroyed", func(t *testing.T) {
		g := NewWithT(t)
		tmpls, err := c.VMsByName(ctx, "Rocky Linux 9")
		g.Expect(err).NotTo(HaveOccurred())
		ref, err := c.CopyVM(ctx, tmpls[0].Ref, "copied", NullRef)
		g.Expect(err).NotTo(HaveOccurred())
		vm, err := c.VM(ctx, ref)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(vm.NameLabel).To(Equal("copied"))
		g.Eventually(func() int { return s.Stats().TasksActive }).Should(BeZero())
		g.Expect(s.Stats().Calls).To(HaveKeyWithValue("task.destroy", 1))
		g.Expect(s.Stats().Calls).NotTo(HaveKey("task.get_record"), "no polling while events flow")
	})
	t.Run("a failure carries xapi's code", func(t *testing.T) {
		g := NewWithT(t)
		tmpls, err := c.VMsByName(ctx, "Rocky Linux 9")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = Async[string](ctx, c, "VM.start", tmpls[0].Ref, false, false)
		g.Expect(codeOf(err)).To(Equal(CodeVMIsTemplate))
	})
	t.Run("a task lost with a xapi restart means: look again", func(t *testing.T) {
		g := NewWithT(t)
		tmpls, err := c.VMsByName(ctx, "Rocky Linux 9")
		g.Expect(err).NotTo(HaveOccurred())
		go func() {
			time.Sleep(100 * time.Millisecond)
			s.Restart(0)
		}()
		_, err = c.CopyVM(ctx, tmpls[0].Ref, "lost", NullRef)
		g.Expect(errors.Is(err, ErrTaskCollected)).To(BeTrue(), "got %v", err)
	})
}

func TestMutationCap(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{OpDurations: map[string]time.Duration{"start": 150 * time.Millisecond}})
	p := newSessions(t, Options{MaxConcurrentMutations: 2})
	c := mustClient(t, p, "host", endpoint(s.URL()))
	ctx := context.Background()
	var vms []*VM
	for i := range 6 {
		vms = append(vms, install(ctx, g, c, "Debian Bookworm 12", fmt.Sprint("capped-", i)))
	}
	var wg sync.WaitGroup
	for _, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.Expect(c.StartVM(ctx, vm.Ref, false)).To(Succeed())
		}()
	}
	wg.Wait()
	g.Expect(s.Stats().OperationsPeak).To(Equal(2))
	g.Expect(s.Stats().VMs).To(HaveKeyWithValue("Running", 6))
}

func TestTLS(t *testing.T) {
	g := NewWithT(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	s := newSim(t, xapisim.Config{TLS: true, CAFile: caFile})
	ca, err := os.ReadFile(caFile)
	g.Expect(err).NotTo(HaveOccurred())
	p := newSessions(t, Options{})
	ctx := context.Background()

	verified := endpoint(s.URL())
	verified.CABundle = ca
	_, err = mustClient(t, p, "verified", verified).PoolRecord(ctx)
	g.Expect(err).NotTo(HaveOccurred())

	_, err = mustClient(t, p, "unverified", endpoint(s.URL())).PoolRecord(ctx)
	g.Expect(IsConnectionError(err)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring("certificate"))

	insecure := endpoint(s.URL())
	insecure.InsecureSkipVerify = true
	_, err = mustClient(t, p, "insecure", insecure).PoolRecord(ctx)
	g.Expect(err).NotTo(HaveOccurred())

	bad := endpoint(s.URL())
	bad.CABundle = []byte("not a certificate")
	_, err = p.Client("bad", bad)
	g.Expect(err).To(MatchError(ContainSubstring("no PEM certificate")))
}

func TestMetrics(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{})
	reg := prometheus.NewRegistry()
	p := newSessions(t, Options{Registerer: reg})
	ep := endpoint(s.URL() + "/?token=secret")
	ep.Name = "ns/pool-a" // the XenHost: a bounded label without credentials
	c := mustClient(t, p, "host", ep)
	ctx := context.Background()
	_, err := c.VMs(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.VM(ctx, "OpaqueRef:missing")
	g.Expect(IsHandleInvalid(err)).To(BeTrue())
	g.Expect(IsNotFound(err)).To(BeTrue())

	g.Expect(testutil.ToFloat64(p.metrics.calls.WithLabelValues("ns/pool-a", "VM.get_all_records", "SUCCESS"))).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(p.metrics.calls.WithLabelValues("ns/pool-a", "VM.get_record", "HANDLE_INVALID"))).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(p.metrics.logins.WithLabelValues("ns/pool-a", "login", "SUCCESS"))).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(p.metrics.sessions.WithLabelValues("ns/pool-a"))).To(Equal(1.0))

	unnamed := mustClient(t, p, "other", endpoint(s.URL()+"/xmlrpc?x=1"))
	_, err = unnamed.VMs(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(testutil.ToFloat64(p.metrics.calls.WithLabelValues(s.URL(), "VM.get_all_records", "SUCCESS"))).To(Equal(1.0),
		"without a name, the label is the URL's scheme, host and port only")
	families, err := reg.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				g.Expect(l.GetValue()).NotTo(ContainSubstring("OpaqueRef:"), "no session ref in a label")
			}
		}
	}
}

func TestEndpointsCarryNoCredentials(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{})
	p := newSessions(t, Options{})
	_, err := p.Client("x", endpoint(strings.Replace(s.URL(), "://", "://root:xenserver@", 1)))
	g.Expect(err).To(MatchError(ContainSubstring("must not carry credentials")))
	g.Expect(err.Error()).NotTo(ContainSubstring("xenserver@"), "the refusal does not repeat them")

	// A refused connection names the endpoint by its site only.
	c := mustClient(t, p, "y", endpoint("http://127.0.0.1:1/path?session_id=OpaqueRef:secret"))
	_, err = c.VMs(context.Background())
	g.Expect(IsConnectionError(err)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring("http://127.0.0.1:1"))
	g.Expect(err.Error()).NotTo(ContainSubstring("OpaqueRef:secret"))
}

// A task begun with Begin holds an operation slot until it ends. When xapi
// restarts and loses it, the full resync gives the slot back, even though
// the task's pending state was seen before (XENAPI.md 11: tasks do not
// survive a restart).
func TestBegunTaskSlotAfterRestart(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, xapisim.Config{OpDurations: map[string]time.Duration{"start": time.Hour}})
	p := newSessions(t, Options{MaxConcurrentMutations: 1})
	c := mustClient(t, p, "host", endpoint(s.URL()))
	ctx := context.Background()
	a := install(ctx, g, c, "Rocky Linux 9", "slot-a")
	sub, err := c.Subscribe()
	g.Expect(err).NotTo(HaveOccurred())
	defer sub.Close()
	g.Eventually(sub.Events(), 5*time.Second).Should(Receive(HaveField("Op", OpSynced)))

	task, err := c.Begin(ctx, "VM.start", a.Ref, false, false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() bool {
		for {
			select {
			case e := <-sub.Events():
				if e.Ref == task && e.Task() != nil && e.Task().Status == TaskPending {
					return true
				}
			default:
				return false
			}
		}
	}, 5*time.Second, 20*time.Millisecond).Should(BeTrue(), "the watcher saw the task pending")
	g.Expect(c.Saturated()).To(BeFalse())

	// The connection drops first, so that the watcher cannot see the task's
	// deletion: it learns of it only from the full resync.
	s.Refuse(time.Second)
	time.Sleep(200 * time.Millisecond)
	s.Restart(0)
	acquired := make(chan error, 1)
	go func() {
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := c.slots.acquire(actx, false); err != nil {
			acquired <- err
			return
		}
		c.slots.release()
		acquired <- nil
	}()
	g.Eventually(acquired, 20*time.Second).Should(Receive(BeNil()), "the lost task's slot came back")
}

func TestErrorsNeverShowASessionRef(t *testing.T) {
	g := NewWithT(t)
	err := &Error{Method: "VM.get_all", Code: CodeSessionInvalid, Params: []string{"OpaqueRef:secret"}}
	g.Expect(err.Error()).To(Equal("xenapi VM.get_all: SESSION_INVALID"))
	err = &Error{Method: "VM.start", Code: CodeVMBadPowerState, Params: []string{"OpaqueRef:vm", "halted", "running"}}
	g.Expect(err.Error()).To(Equal("xenapi VM.start: VM_BAD_POWER_STATE [OpaqueRef:vm, halted, running]"))
	g.Expect(IsBadPowerState(fmt.Errorf("wrapped: %w", err))).To(BeTrue())
}
