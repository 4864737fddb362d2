package controller

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// brownfieldVM installs a VM directly through XenAPI, as another tool
// would, and returns it.
func brownfieldVM(name string, running bool) *xenapi.VM {
	GinkgoHelper()
	tmpls, err := xen.VMsByName(ctx, "Debian Bookworm 12")
	Expect(err).NotTo(HaveOccurred())
	Expect(tmpls).To(HaveLen(1))
	ref, err := xen.CloneVM(ctx, tmpls[0].Ref, name)
	Expect(err).NotTo(HaveOccurred())
	pool, err := xen.PoolRecord(ctx)
	Expect(err).NotTo(HaveOccurred())
	sr, err := xen.SR(ctx, pool.DefaultSR)
	Expect(err).NotTo(HaveOccurred())
	vm, err := xen.VM(ctx, ref)
	Expect(err).NotTo(HaveOccurred())
	oc := vm.OtherConfig
	oc["disks"] = vmservice.DiskPlan{DefaultSR: sr.UUID}.Rewrite(oc["disks"])
	Expect(xen.SetVMOtherConfig(ctx, ref, oc)).To(Succeed())
	Expect(xen.ProvisionVM(ctx, ref)).To(Succeed())
	if running {
		Expect(xen.StartVM(ctx, ref, false)).To(Succeed())
	}
	vm, err = xen.VM(ctx, ref)
	Expect(err).NotTo(HaveOccurred())
	return vm
}

func adoptSpec(uuid string, power virtv1alpha1.PowerState) virtv1alpha1.XenVMSpec {
	return virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "pool"},
		VM: &virtv1alpha1.VMReference{UUID: uuid}, PowerState: power}
}

var _ = Describe("Adoption", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		host := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
	})

	It("adopts an existing VM by UUID, keeps its name, and retains it by default when the XenVM goes", func() {
		vm := brownfieldVM("legacy-db", false)
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, Spec: adoptSpec(vm.UUID, virtv1alpha1.PowerStateRunning)}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		got, err := xen.VM(ctx, vm.Ref)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.NameLabel).To(Equal("legacy-db"), "an adopted VM keeps its name")
		Expect(got.OtherConfig).To(HaveKeyWithValue(vmservice.TagUID, mustUID(obj)))
		Expect(getVM(Default, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionProvisioned, metav1.ConditionTrue, virtv1alpha1.ReasonAdopted))

		By("a second XenVM naming the same VM is refused")
		other := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-again"}, Spec: adoptSpec(vm.UUID, virtv1alpha1.PowerStateHalted)}
		Expect(k8sClient.Create(ctx, other)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, other).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonAdoptionRefused))
		}, 10*time.Second).Should(Succeed())
		Consistently(func(g Gomega) {
			v, err := xen.VM(ctx, vm.Ref)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(v.PowerState).To(Equal(xenapi.PowerStateRunning), "the refused XenVM changes nothing")
		}, time.Second).Should(Succeed())
		Expect(k8sClient.Delete(ctx, other)).To(Succeed())

		By("deleting the XenVM: the VM stays, untagged (Retain, an adopted VM's default)")
		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			v, err := xen.VM(ctx, vm.Ref)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(v.OtherConfig).NotTo(HaveKey(vmservice.TagUID))
			g.Expect(v.PowerState).To(Equal(xenapi.PowerStateRunning))
		}, 20*time.Second).Should(Succeed())
	})

	It("observes a VM without changing it, even when it is halted behind the operator's back", func() {
		vm := brownfieldVM("watched", true)
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "watched"}, Spec: adoptSpec(vm.UUID, virtv1alpha1.PowerStateRunning)}
		obj.Spec.ManagementPolicy = virtv1alpha1.ManagementPolicyObserve
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonObserved))
		}, 10*time.Second).Should(Succeed())
		before, err := xen.VM(ctx, vm.Ref)
		Expect(err).NotTo(HaveOccurred())
		Expect(before.OtherConfig).NotTo(HaveKey(vmservice.TagUID), "an observed VM is not tagged")

		Expect(xen.HardShutdownVM(ctx, vm.Ref)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, obj).Status.PowerState).To(Equal(virtv1alpha1.PowerStateHalted))
		}, 10*time.Second).Should(Succeed())
		Consistently(func(g Gomega) {
			v, err := xen.VM(ctx, vm.Ref)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(v.PowerState).To(Equal(xenapi.PowerStateHalted), "it stays halted")
		}, 2*time.Second).Should(Succeed())

		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &virtv1alpha1.XenVM{})).NotTo(Succeed())
		}, 10*time.Second).Should(Succeed())
		after, err := xen.VM(context.Background(), vm.Ref)
		Expect(err).NotTo(HaveOccurred(), "deleting an observing XenVM leaves the VM")
		Expect(after.OtherConfig).To(Equal(before.OtherConfig))
	})

	It("refuses a template and reports a UUID no VM has", func() {
		tmpls, err := xen.VMsByName(ctx, "Rocky Linux 9")
		Expect(err).NotTo(HaveOccurred())
		tmpl := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tmpl"}, Spec: adoptSpec(tmpls[0].UUID, virtv1alpha1.PowerStateHalted)}
		missing := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "missing"},
			Spec: adoptSpec("00000000-0000-4000-8000-000000000000", virtv1alpha1.PowerStateHalted)}
		Expect(k8sClient.Create(ctx, tmpl)).To(Succeed())
		Expect(k8sClient.Create(ctx, missing)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, tmpl).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonAdoptionRefused))
			g.Expect(condition(getVM(g, tmpl).Status.Conditions, virtv1alpha1.ConditionProvisioned).Message).To(ContainSubstring("a template"))
			g.Expect(getVM(g, missing).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonVMNotFound))
		}, 10*time.Second).Should(Succeed())
		got, err := xen.VM(ctx, tmpls[0].Ref)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.OtherConfig).NotTo(HaveKey(vmservice.TagUID))
	})
})

var _ = Describe("Protection and tags", func() {
	It("blocks VM.destroy for other tools, keeps the tags and the affinity, and lifts its own block to delete", func() {
		ns := newNamespace()
		host := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "precious"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateHalted)}
		obj.Spec.ProtectFromDestroy = true
		obj.Spec.Tags = []string{"prod", "db"}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateHalted)
		var ref string
		Eventually(func(g Gomega) {
			vm := vmOf(g, obj)
			ref = vm.Ref
			g.Expect(vm.BlockedOperations).To(HaveKeyWithValue("destroy", ContainSubstring("protected by XenVM "+ns+"/precious")))
			g.Expect(vm.Tags).To(ConsistOf("prod", "db"))
		}, 10*time.Second).Should(Succeed())
		err := xen.DestroyVM(ctx, ref)
		Expect(xenapi.CodeOf(err)).To(Equal(xenapi.CodeOperationBlocked), "another tool is refused: %v", err)

		By("an affinity host set, then removed from the spec: the VM's affinity goes too")
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.AffinityHost = "xcp-ng-02" })
		Eventually(func(g Gomega) { g.Expect(vmOf(g, obj).Affinity).NotTo(BeEmpty()) }, 10*time.Second).Should(Succeed())
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.AffinityHost = "" })
		Eventually(func(g Gomega) { g.Expect(vmOf(g, obj).Affinity).To(BeEmpty()) }, 10*time.Second).Should(Succeed())

		By("changing the tags and lifting the protection")
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.Tags = []string{"prod"}; vm.Spec.ProtectFromDestroy = false })
		Eventually(func(g Gomega) {
			vm := vmOf(g, obj)
			g.Expect(vm.BlockedOperations).NotTo(HaveKey("destroy"))
			g.Expect(vm.Tags).To(ConsistOf("prod"))
		}, 10*time.Second).Should(Succeed())

		By("protected again, then deleted with Delete: the operator lifts its block")
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.ProtectFromDestroy = true })
		Eventually(func(g Gomega) {
			g.Expect(vmOf(g, obj).BlockedOperations).To(HaveKey("destroy"))
		}, 10*time.Second).Should(Succeed())
		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			_, err := xen.VM(ctx, ref)
			g.Expect(xenapi.IsHandleInvalid(err)).To(BeTrue())
		}, 20*time.Second).Should(Succeed())
	})
})
