package controller

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xapisim"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// callsExcept sums the calls of after less before, leaving out the methods
// with one of the prefixes.
func callsExcept(after, before xapisim.Stats, prefixes ...string) (int, map[string]int) {
	total, by := 0, map[string]int{}
	for m, n := range after.Calls {
		skip := false
		for _, p := range prefixes {
			skip = skip || strings.HasPrefix(m, p)
		}
		if d := n - before.Calls[m]; d > 0 && !skip {
			total += d
			by[m] = d
		}
	}
	return total, by
}

// eventsOf lists the events recorded about the object named name in ns.
func eventsOf(g Gomega, ns, name string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

var _ = Describe("Faults", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("backs off a VM that cannot start: fewer than 15 calls in its first 5 minutes (here 100 times faster)", func() {
		// Each host keeps 4.5 GiB for itself and its control domain: 1.5 GiB
		// are free, and the Windows template needs 2.
		own := startSim(xapisim.Config{HostMemory: 6 << 30, OpDuration: 10 * time.Millisecond})
		host := newHost(ns, "small", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		before := own.Stats()
		obj := newVM(ns, "too-big", "small", "Windows Server 2022 (64-bit)", virtv1alpha1.PowerStateRunning)
		time.Sleep(5 * time.Minute / 100)
		calls, byMethod := callsExcept(own.Stats(), before, "event.", "session.", "host_metrics.")
		GinkgoWriter.Printf("calls in the first 3 s: %d %v\n", calls, byMethod)
		Expect(calls).To(BeNumerically("<", 15), "%v", byMethod)
		Expect(byMethod["Async.VM.start"]).To(BeNumerically(">=", 3), "it did try again")
		Expect(byMethod["task.destroy"]).To(Equal(byMethod["Async.VM.start"]), "every failed task is destroyed")

		st := getVM(Default, obj).Status
		synced := condition(st.Conditions, virtv1alpha1.ConditionPowerStateSynced)
		Expect(synced.Reason).To(Equal(virtv1alpha1.ReasonPowerOperationFailed))
		Expect(synced.Message).To(And(ContainSubstring(xenapi.CodeHostNotEnoughFreeMemory), ContainSubstring("retrying in")))
		Expect(st.Phase).To(Equal(virtv1alpha1.PhaseHalted))
	})

	It("reports a broken XenHost's own reason at once, and its XenVMs do not hold up a healthy one", func() {
		healthy := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(healthy, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		vm := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "healthy"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "pool"},
				Template: "Debian Bookworm 12", PowerOffMode: virtv1alpha1.PowerOffHard},
		}
		Expect(k8sClient.Create(ctx, vm)).To(Succeed())
		waitPower(vm, virtv1alpha1.PowerStateRunning)

		broken := newHost(ns, "broken", startSim(xapisim.Config{}).URL(), "wrong")
		expectHostCondition(broken, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionFalse, virtv1alpha1.ReasonAuthenticationFailed)
		var waiting []*virtv1alpha1.XenVM
		for i := range 50 {
			waiting = append(waiting, newVM(ns, fmt.Sprintf("waiting-%02d", i), "broken", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning))
		}
		for _, w := range waiting {
			Eventually(func(g Gomega) {
				c := condition(getVM(g, w).Status.Conditions, virtv1alpha1.ConditionHostAvailable)
				g.Expect(c.Reason).To(Equal(virtv1alpha1.ReasonAuthenticationFailed), "the XenHost's own reason")
				g.Expect(c.Message).To(ContainSubstring("SESSION_AUTHENTICATION_FAILED"))
			}, 10*time.Second).Should(Succeed())
		}

		got := getVM(Default, vm)
		got.Spec.PowerState = virtv1alpha1.PowerStateHalted
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		start := time.Now()
		Eventually(func(g Gomega) {
			v, err := xen.VMByUUID(ctx, got.Status.UUID)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(v.CurrentOperations).To(Or(Not(BeEmpty()), Satisfy(func(map[string]string) bool {
				return v.PowerState == xenapi.PowerStateHalted
			})))
		}, time.Second, 20*time.Millisecond).Should(Succeed(), "acted on within a second")
		GinkgoWriter.Printf("acted on in %s\n", time.Since(start))
		waitPower(vm, virtv1alpha1.PowerStateHalted)
	})

	It("looks at the VM again when xapi restarts and loses the operation's task", func() {
		own := startSim(xapisim.Config{OpDuration: 10 * time.Millisecond, OpDurations: map[string]time.Duration{"start": 3 * time.Second}})
		host := newHost(ns, "restarting", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		obj := newVM(ns, "interrupted", "restarting", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)
		Eventually(func(g Gomega) {
			op := getVM(g, obj).Status.Operation
			g.Expect(op).NotTo(BeNil())
			g.Expect(op.Name).To(Equal("start"))
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())

		own.Restart(time.Second) // the start's task is cancelled and forgotten
		Eventually(func(g Gomega) {
			g.Expect(eventsOf(g, ns, "interrupted")).To(ContainElement(HaveField("Reason", virtv1alpha1.ReasonOperationLost)))
		}, 30*time.Second).Should(Succeed(), "noticed within one resync")
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
			g.Expect(st.Phase).To(Equal(virtv1alpha1.PhaseRunning))
		}, 30*time.Second).Should(Succeed(), "started again")
		Expect(own.Stats().VMs).To(Equal(map[string]int{"Running": 1}))
	})

	It("cancels an operation that outlives operationTimeout, then tries again", func() {
		own := startSim(xapisim.Config{OpDuration: 10 * time.Millisecond, OpDurations: map[string]time.Duration{"start": time.Hour}})
		host := newHost(ns, "slow", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		obj := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hung"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "slow"}, Template: "Debian Bookworm 12",
				OperationTimeout: &metav1.Duration{Duration: 10 * time.Second}},
		}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, obj).Status.Phase).To(Equal(virtv1alpha1.PhaseStarting))
		}, 20*time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			c := condition(getVM(g, obj).Status.Conditions, virtv1alpha1.ConditionPowerStateSynced)
			g.Expect(c.Reason).To(Equal(virtv1alpha1.ReasonOperationTimedOut))
		}, 20*time.Second).Should(Succeed(), "within the timeout plus a little")
		Eventually(func() int { return own.Stats().TasksActive }, 10*time.Second).Should(BeZero(), "its task was cancelled")

		By("xapi is quick again: the next attempt succeeds")
		rc := own.Runtime()
		rc.OpDurations = map[string]xapisim.Duration{"start": xapisim.Duration(10 * time.Millisecond)}
		own.SetRuntime(rc)
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
		}, 20*time.Second).Should(Succeed())
		Expect(own.Stats().VMs).To(Equal(map[string]int{"Running": 1}))
	})

	It("picks up a default SR set on the pool after the operator started", func() {
		own := startSim(xapisim.Config{OpDuration: 10 * time.Millisecond})
		pools := xenapi.NewSessions(xenapi.Options{Originator: "controller-tests"})
		DeferCleanup(func() { pools.Close(ctx) })
		xc, err := pools.Client("tests", xenapi.Endpoint{URL: own.URL(), Username: "root", Password: "xenserver"})
		Expect(err).NotTo(HaveOccurred())
		pool, err := xc.PoolRecord(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(xc.SetPoolDefaultSR(ctx, pool.Ref, "")).To(Succeed())

		host := newHost(ns, "no-sr", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		obj := newVM(ns, "waits-for-sr", "no-sr", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)
		Eventually(func(g Gomega) {
			c := condition(getVM(g, obj).Status.Conditions, virtv1alpha1.ConditionProvisioned)
			g.Expect(c.Reason).To(Equal(virtv1alpha1.ReasonProvisionFailed))
			g.Expect(c.Message).To(ContainSubstring("no default SR"))
		}, 20*time.Second).Should(Succeed())

		Expect(xc.SetPoolDefaultSR(ctx, pool.Ref, pool.DefaultSR)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, obj).Status.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
		}, 15*time.Second).Should(Succeed(), "without a restart, and well before the minute's fallback")
	})
})
