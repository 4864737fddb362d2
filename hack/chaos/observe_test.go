package main

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xapisim"
)

func TestViewSortsVMsByOwner(t *testing.T) {
	g := NewWithT(t)
	uids := map[string]string{"a": "vm-a", "b": "vm-b", "c": "vm-c"}
	snap := xapisim.Snapshot{VMs: []xapisim.SnapshotVM{
		{UUID: "dom0", IsControlDomain: true, PowerState: "Running"},
		{UUID: "debian", NameLabel: "Debian Bookworm 12", IsTemplate: true},
		{UUID: "a1", NameLabel: "vm-a", OtherConfig: map[string]string{tagUID: "a"}, PowerState: "Running"},
		{UUID: "b1", NameLabel: installPrefix + "b", PowerState: "Halted"},
		{UUID: "b2", NameLabel: "vm-b", OtherConfig: map[string]string{tagUID: "b"}, PowerState: "Halted"},
		{UUID: "c1", NameLabel: installPrefix + "c", IsTemplate: true},
		{UUID: "x1", NameLabel: installPrefix + "x", IsTemplate: true},
		{UUID: "y1", NameLabel: "someone's", OtherConfig: map[string]string{tagUID: "y"}},
		{UUID: "z1", NameLabel: "an admin's VM"},
	}}
	v := viewOf(snap, uids)
	uuids := func(vms []xapisim.SnapshotVM) []string {
		var out []string
		for _, vm := range vms {
			out = append(out, vm.UUID)
		}
		return out
	}
	g.Expect(uuids(v.vms["a"])).To(Equal([]string{"a1"}))
	g.Expect(uuids(v.vms["b"])).To(Equal([]string{"b1", "b2"}), "an install-named VM and a tagged one: two VMs")
	g.Expect(v.vms["c"]).To(BeEmpty())
	g.Expect(uuids(v.templates["c"])).To(Equal([]string{"c1"}), "a clone not provisioned yet is a template")
	g.Expect(uuids(v.orphans)).To(ConsistOf("x1", "y1", "z1"))

	obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Name: "vm-a", UID: types.UID("a")},
		Spec: virtv1alpha1.XenVMSpec{PowerState: virtv1alpha1.PowerStateRunning},
		Status: virtv1alpha1.XenVMStatus{UUID: "a1", PowerState: virtv1alpha1.PowerStateRunning,
			Conditions: []metav1.Condition{{Type: virtv1alpha1.ConditionReady, Status: metav1.ConditionTrue}}}}
	g.Expect(converged(obj, &v)).To(BeTrue())
	obj.Spec.PowerState = virtv1alpha1.PowerStateHalted
	obj.Status.PowerState = virtv1alpha1.PowerStateHalted
	g.Expect(converged(obj, &v)).To(BeFalse(), "the simulator must agree")
	g.Expect(evidence(obj, &v)).To(And(ContainSubstring("vm-a wants Halted"), ContainSubstring(`VM a1 "vm-a" Running`)))
}

func TestResumed(t *testing.T) {
	g := NewWithT(t)
	samples := []Sample{{T: 1, Converged: 5}, {T: 2, Converged: 6}, {T: 3, Converged: 6}, {T: 4, Converged: 6}, {T: 5, Converged: 8}}
	g.Expect(resumed(samples, 1.5, 2.5)).To(BeNumerically("~", 3.5), "counted from the first sample once the fault is over")
	g.Expect(resumed(samples, 1.5, 1.5)).To(BeNumerically("~", 3.5))
	g.Expect(resumed(samples, 0.5, 0.5)).To(BeNumerically("~", 1.5))
	g.Expect(resumed(samples, 4.5, 4.5)).To(BeNumerically("==", -1))
	g.Expect(at(samples, 3.5).Converged).To(Equal(6))
}
