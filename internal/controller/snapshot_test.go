package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

func newSnapshot(ns, name, vm string, memory bool) *virtv1alpha1.XenVMSnapshot {
	GinkgoHelper()
	obj := &virtv1alpha1.XenVMSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: virtv1alpha1.XenVMSnapshotSpec{VMRef: virtv1alpha1.LocalObjectReference{Name: vm}, Memory: memory}}
	Expect(k8sClient.Create(ctx, obj)).To(Succeed())
	return obj
}

func getSnapshot(g Gomega, obj *virtv1alpha1.XenVMSnapshot) *virtv1alpha1.XenVMSnapshot {
	out := &virtv1alpha1.XenVMSnapshot{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), out)).To(Succeed())
	return out
}

func waitSnapshotReady(obj *virtv1alpha1.XenVMSnapshot) *virtv1alpha1.XenVMSnapshot {
	GinkgoHelper()
	var out *virtv1alpha1.XenVMSnapshot
	Eventually(func(g Gomega) {
		out = getSnapshot(g, obj)
		g.Expect(out.Status.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonSnapshotTaken))
	}, 20*time.Second).Should(Succeed())
	return out
}

// snapshotsOfVM reads a VM's snapshots from xapi.
func snapshotsOfVM(g Gomega, vm *xenapi.VM) []*xenapi.VM {
	v, err := xen.VM(ctx, vm.Ref)
	g.Expect(err).NotTo(HaveOccurred())
	var out []*xenapi.VM
	for _, ref := range v.Snapshots {
		s, err := xen.VM(ctx, ref)
		g.Expect(err).NotTo(HaveOccurred())
		out = append(out, s)
	}
	return out
}

var _ = Describe("Snapshots", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		host := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
	})

	It("takes a snapshot once, reports it, and destroys it with its disks when the object goes", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		vm := vmOf(Default, obj)

		snap := waitSnapshotReady(newSnapshot(ns, "before-upgrade", "app", false))
		Expect(snap.Status.UUID).NotTo(BeEmpty())
		Expect(snap.Status.CreationTime).NotTo(BeNil())
		Expect(snap.Status.Size).NotTo(BeNil())
		Expect(snap.Status.Size.Value()).To(BeNumerically(">", 0))
		Expect(snap.Status.Memory).To(BeFalse())
		Expect(snap.OwnerReferences).To(ContainElement(HaveField("UID", getVM(Default, obj).UID)), "collected with its XenVM")
		snaps := snapshotsOfVM(Default, vm)
		Expect(snaps).To(HaveLen(1))
		Expect(snaps[0].UUID).To(Equal(snap.Status.UUID))
		Expect(snaps[0].NameLabel).To(Equal("before-upgrade"))
		Expect(snaps[0].OtherConfig).To(HaveKeyWithValue(vmservice.TagSnapshotUID, string(snap.UID)))
		Consistently(func(g Gomega) { g.Expect(snapshotsOfVM(g, vm)).To(HaveLen(1)) }, 2*time.Second).Should(Succeed())

		By("deleting the object destroys the snapshot and its disks")
		var disks []string
		for _, vbdRef := range snaps[0].VBDs {
			vbd, err := xen.VBD(ctx, vbdRef)
			Expect(err).NotTo(HaveOccurred())
			if vbd.Type == "Disk" {
				disks = append(disks, vbd.VDI)
			}
		}
		Expect(disks).NotTo(BeEmpty())
		Expect(k8sClient.Delete(ctx, snap)).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8sClient.Get(ctx, client.ObjectKeyFromObject(snap), &virtv1alpha1.XenVMSnapshot{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
		}, 20*time.Second).Should(Succeed())
		Expect(snapshotsOfVM(Default, vm)).To(BeEmpty())
		for _, ref := range disks {
			_, err := xen.VDI(ctx, ref)
			Expect(xenapi.IsHandleInvalid(err)).To(BeTrue(), "the snapshot's disk %s is destroyed", ref)
		}
	})

	It("reverts a VM that was Running at snapshot time once, then drives it back to Running", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.Disks = []virtv1alpha1.Disk{{Name: "data", Size: "1Gi"}}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		vm := vmOf(Default, obj)
		rootBefore := getVM(Default, obj).Status.Disks
		snap := waitSnapshotReady(newSnapshot(ns, "good", "web", false))

		By("changing the VM behind the operator's back after the snapshot")
		Expect(xen.SetVMNameDescription(ctx, vm.Ref, "broken by the upgrade")).To(Succeed())
		before := sim.Stats().Calls["VM.revert"] + sim.Stats().Calls["Async.VM.revert"]

		update(obj, func(v *virtv1alpha1.XenVM) {
			v.Spec.RestoreFrom = &virtv1alpha1.RestoreRequest{SnapshotName: "good"}
		})
		Eventually(func(g Gomega) {
			got := getVM(g, obj)
			g.Expect(got.Status.Conditions).To(haveCondition(virtv1alpha1.ConditionRestored, metav1.ConditionTrue, virtv1alpha1.ReasonReverted))
			g.Expect(got.Status.RestoredFrom).NotTo(BeNil())
			g.Expect(got.Status.RestoredFrom.SnapshotUUID).To(Equal(snap.Status.UUID))
			g.Expect(got.Status.RestoredFrom.Done()).To(BeTrue())
		}, 30*time.Second).Should(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		v, err := xen.VM(ctx, vm.Ref)
		Expect(err).NotTo(HaveOccurred())
		Expect(v.NameDescription).To(Equal(vm.NameDescription), "the snapshot's metadata is back")
		Expect(v.UUID).To(Equal(vm.UUID), "the same VM")
		Eventually(func(g Gomega) {
			got := getVM(g, obj)
			g.Expect(got.Status.Disks).NotTo(BeEmpty())
			g.Expect(got.Status.Disks[0].VDIUUID).NotTo(Equal(rootBefore[0].VDIUUID), "the root disk is the snapshot's clone")
		}, 10*time.Second).Should(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(sim.Stats().Calls["VM.revert"]+sim.Stats().Calls["Async.VM.revert"]-before).To(Equal(1), "reverted once")
		}, 3*time.Second).Should(Succeed())
		By("the disks are the snapshot's clones, each once, and the snapshot's disks are not taken for the VM's")
		Eventually(func(g Gomega) {
			got := getVM(g, obj)
			g.Expect(got.Status.Conditions).To(haveCondition(virtv1alpha1.ConditionDisksSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
			g.Expect(disksOfVM(g, vmOf(g, obj))).To(HaveLen(2), "root and data")
		}, 10*time.Second).Should(Succeed())

		By("removing restoreFrom forgets the revert; the VM stays as it is")
		update(obj, func(v *virtv1alpha1.XenVM) { v.Spec.RestoreFrom = nil })
		Eventually(func(g Gomega) {
			got := getVM(g, obj)
			g.Expect(got.Status.RestoredFrom).To(BeNil())
		}, 10*time.Second).Should(Succeed())
	})

	It("finds the snapshot a crash left before its status, instead of taking a second one", func() {
		vm := brownfieldVM("legacy-crash", true)
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"}, Spec: adoptSpec(vm.UUID, virtv1alpha1.PowerStateRunning)}
		obj.Spec.ManagementPolicy = virtv1alpha1.ManagementPolicyObserve
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		snap := newSnapshot(ns, "crashed", "legacy", false)
		Eventually(func(g Gomega) {
			g.Expect(getSnapshot(g, snap).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonObserveOnly))
		}, 10*time.Second).Should(Succeed())

		By("leaving what a process that crashed after VM.snapshot left: a snapshot under the snapshot's name, untagged")
		o := vmservice.Owner{UID: string(getSnapshot(Default, snap).UID), Namespace: ns, Name: snap.Name}
		ref, err := xen.SnapshotVM(ctx, vm.Ref, o.SnapshotName())
		Expect(err).NotTo(HaveOccurred())
		time.Sleep(time.Second) // a restarted manager's first sync shows it before any reconcile

		update(obj, func(v *virtv1alpha1.XenVM) { v.Spec.ManagementPolicy = virtv1alpha1.ManagementPolicyManage })
		ready := waitSnapshotReady(snap)
		left, err := xen.VM(ctx, ref)
		Expect(err).NotTo(HaveOccurred())
		Expect(ready.Status.UUID).To(Equal(left.UUID), "the snapshot the crash left")
		Expect(left.NameLabel).To(Equal("crashed"))
		Consistently(func(g Gomega) { g.Expect(snapshotsOfVM(g, vm)).To(HaveLen(1), "no second snapshot") }, 2*time.Second).Should(Succeed())
	})

	It("waits for a Running VM to take a snapshot with memory, and reports it", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cold"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateHalted)}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateHalted)
		snap := newSnapshot(ns, "with-memory", "cold", true)
		Eventually(func(g Gomega) {
			g.Expect(getSnapshot(g, snap).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonNotRunning))
		}, 10*time.Second).Should(Succeed())
		Expect(snapshotsOfVM(Default, vmOf(Default, obj))).To(BeEmpty())
		update(obj, func(v *virtv1alpha1.XenVM) { v.Spec.PowerState = virtv1alpha1.PowerStateRunning })
		ready := waitSnapshotReady(snap)
		Expect(ready.Status.Memory).To(BeTrue())
		Expect(ready.Status.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))

		By("a revert to it leaves the VM where the checkpoint was, then running")
		update(obj, func(v *virtv1alpha1.XenVM) {
			v.Spec.RestoreFrom = &virtv1alpha1.RestoreRequest{SnapshotName: "with-memory"}
		})
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionRestored, metav1.ConditionTrue, virtv1alpha1.ReasonReverted))
		}, 30*time.Second).Should(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
	})

	It("destroys every snapshot of the VM, other tools' too, when the XenVM is deleted with Delete", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateHalted)}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateHalted)
		vm := vmOf(Default, obj)
		snap := waitSnapshotReady(newSnapshot(ns, "mine", "gone", false))
		other, err := xen.SnapshotVM(ctx, vm.Ref, "taken by another tool")
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &virtv1alpha1.XenVM{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
		}, 20*time.Second).Should(Succeed())
		for _, ref := range []string{other} {
			_, err := xen.VM(ctx, ref)
			Expect(xenapi.IsHandleInvalid(err)).To(BeTrue(), "snapshot %s destroyed with its VM", ref)
		}
		_, err = xen.VMByUUID(ctx, snap.Status.UUID)
		Expect(xenapi.IsUUIDInvalid(err)).To(BeTrue())
		// envtest runs no garbage collector: delete the dependent as it would.
		Expect(k8sClient.Delete(ctx, getSnapshot(Default, snap))).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "mine"}, &virtv1alpha1.XenVMSnapshot{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "its finalizer lets go once the XenVM is gone")
		}, 10*time.Second).Should(Succeed())
	})
})
