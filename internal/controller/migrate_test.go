package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xapisim"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

func migrateCalls() int {
	st := sim.Stats()
	return st.Calls["VM.pool_migrate"] + st.Calls["Async.VM.pool_migrate"]
}

var _ = Describe("Live migration and HA", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		host := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
	})

	It("migrates a running VM live when affinityHost changes, and only sets the affinity of a halted one", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mover"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.AffinityHost = "xcp-ng-01"
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(getVM(g, obj).Status.ResidentOn).To(Equal("xcp-ng-01")) }, 30*time.Second).Should(Succeed())
		before := migrateCalls()

		update(obj, func(v *virtv1alpha1.XenVM) { v.Spec.AffinityHost = "xcp-ng-02" })
		Eventually(func(g Gomega) {
			got := getVM(g, obj)
			g.Expect(got.Status.ResidentOn).To(Equal("xcp-ng-02"))
			g.Expect(got.Status.PowerState).To(Equal(virtv1alpha1.PowerStateRunning), "moved live, never stopped")
			g.Expect(got.Status.Conditions).To(haveCondition(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
		}, 30*time.Second).Should(Succeed())
		Expect(migrateCalls() - before).To(Equal(1))
		vm := vmOf(Default, obj)
		Expect(vm.PowerState).To(BeEquivalentTo("Running"))

		By("a halted VM only gets the new affinity")
		update(obj, func(v *virtv1alpha1.XenVM) { v.Spec.PowerState = virtv1alpha1.PowerStateHalted })
		waitPower(obj, virtv1alpha1.PowerStateHalted)
		before = migrateCalls()
		update(obj, func(v *virtv1alpha1.XenVM) { v.Spec.AffinityHost = "xcp-ng-01" })
		Eventually(func(g Gomega) {
			h := hostNamed(g, "xcp-ng-01")
			g.Expect(vmOf(g, obj).Affinity).To(Equal(h.Ref))
		}, 10*time.Second).Should(Succeed())
		Expect(migrateCalls()).To(Equal(before))
		Expect(getVM(Default, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
	})

	It("reports a migration xapi refuses for a disk on a local SR, without a retry storm", func() {
		local := localSR(Default, "xcp-ng-01")
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pinned"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.AffinityHost = "xcp-ng-01"
		obj.Spec.Disks = []virtv1alpha1.Disk{{Name: "root", Storage: local.UUID}}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(getVM(g, obj).Status.ResidentOn).To(Equal("xcp-ng-01")) }, 30*time.Second).Should(Succeed())
		st := sim.Stats()
		asserts := st.Calls["VM.assert_can_boot_here"]
		before := migrateCalls()

		update(obj, func(v *virtv1alpha1.XenVM) { v.Spec.AffinityHost = "xcp-ng-02" })
		Eventually(func(g Gomega) {
			got := getVM(g, obj)
			g.Expect(got.Status.Conditions).To(haveCondition(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionFalse, virtv1alpha1.ReasonMigrationRefused))
			g.Expect(condition(got.Status.Conditions, virtv1alpha1.ConditionPlacementSynced).Message).To(ContainSubstring("VM_REQUIRES_SR"))
		}, 10*time.Second).Should(Succeed())
		time.Sleep(3 * time.Second)
		got := getVM(Default, obj)
		Expect(got.Status.ResidentOn).To(Equal("xcp-ng-01"))
		Expect(got.Status.PowerState).To(Equal(virtv1alpha1.PowerStateRunning), "a refused move keeps the VM running")
		Expect(got.Status.Conditions).To(haveCondition(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
		Expect(migrateCalls()).To(Equal(before), "xapi's check refuses before any migration")
		// The test backoff is 100 ms doubling: about six checks in 3 s, never a storm.
		Expect(sim.Stats().Calls["VM.assert_can_boot_here"] - asserts).To(BeNumerically("<=", 7))
	})

	It("reports a target without the memory, and moves the VM once the memory is free", func() {
		// Each host keeps 4.5 GiB for itself: 1.5 GiB are free, room for one 1 GiB VM.
		own := startSim(xapisim.Config{Hosts: 2, HostMemory: 6 << 30, OpDuration: 10 * time.Millisecond})
		host := newHost(ns, "small", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		gib := resource.MustParse("1Gi")
		runOn := func(name, on string) *virtv1alpha1.XenVM {
			obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: vmSpec("small", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
			obj.Spec.AffinityHost, obj.Spec.Memory = on, &gib
			Expect(k8sClient.Create(ctx, obj)).To(Succeed())
			Eventually(func(g Gomega) { g.Expect(getVM(g, obj).Status.ResidentOn).To(Equal(on)) }, 30*time.Second).Should(Succeed())
			return obj
		}
		a, b := runOn("a", "xcp-ng-01"), runOn("b", "xcp-ng-02")

		update(a, func(v *virtv1alpha1.XenVM) { v.Spec.AffinityHost = "xcp-ng-02" })
		Eventually(func(g Gomega) {
			c := condition(getVM(g, a).Status.Conditions, virtv1alpha1.ConditionPlacementSynced)
			g.Expect(c.Reason).To(Equal(virtv1alpha1.ReasonMigrationRefused))
			g.Expect(c.Message).To(ContainSubstring(xenapi.CodeHostNotEnoughFreeMemory))
		}, 10*time.Second).Should(Succeed())
		Expect(getVM(Default, a).Status.ResidentOn).To(Equal("xcp-ng-01"))

		By("halting b frees the memory: a moves after its wait")
		update(b, func(v *virtv1alpha1.XenVM) { v.Spec.PowerState = virtv1alpha1.PowerStateHalted })
		Eventually(func(g Gomega) {
			st := getVM(g, a).Status
			g.Expect(st.ResidentOn).To(Equal("xcp-ng-02"))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
		}, 20*time.Second).Should(Succeed())
	})

	It("keeps haRestartPriority as declared", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ha"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.HARestartPriority = virtv1alpha1.HARestartPriorityRestart
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(vmOf(g, obj).HARestartPriority).To(Equal("restart")) }, 30*time.Second).Should(Succeed())
		update(obj, func(v *virtv1alpha1.XenVM) { v.Spec.HARestartPriority = virtv1alpha1.HARestartPriorityBestEffort })
		Eventually(func(g Gomega) { g.Expect(vmOf(g, obj).HARestartPriority).To(Equal("best-effort")) }, 10*time.Second).Should(Succeed())
		By("a change behind the operator's back is put back")
		Expect(xen.SetVMHARestartPriority(ctx, vmOf(Default, obj).Ref, "")).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(vmOf(g, obj).HARestartPriority).To(Equal("best-effort")) }, 10*time.Second).Should(Succeed())
	})
})

// hostNamed reads a host of the shared pool by name.
func hostNamed(g Gomega, name string) *xenapi.Host {
	hosts, err := xen.Hosts(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	for _, h := range hosts {
		if h.NameLabel == name {
			return h
		}
	}
	g.Expect(name).To(BeEmpty(), "no host named %s", name)
	return nil
}
