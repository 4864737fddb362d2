package controller

import (
	"encoding/json"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
)

// object is a cached copy of a XenVM named name with uid, at version rv.
func object(name, uid, rv string) *virtv1alpha1.XenVM {
	return &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(uid), ResourceVersion: rv}}
}

// A reconcile that runs before the informer shows its last status write
// starts from that write; once the cache shows it (or a later version), the
// cached object is what counts again.
func TestStatusWritesOverrideOnlyOlderCopies(t *testing.T) {
	g := NewWithT(t)
	w := newStatusWrites[string]()
	w.record(object("a", "u1", "120"), "starting")
	key := types.NamespacedName{Namespace: "ns", Name: "a"}

	for _, tc := range []struct {
		cached *virtv1alpha1.XenVM
		want   string
		ok     bool
	}{
		{cached: object("a", "u1", "100"), want: "starting", ok: true}, // the cache lags: our write wins
		{cached: object("a", "u1", "119"), want: "starting", ok: true},
		{cached: object("a", "u1", "120"), ok: false},          // caught up
		{cached: object("a", "u2", "100"), ok: false},          // a namesake created since
		{cached: object("a", "u1", "not-a-number"), ok: false}, // not revisions: never compared
	} {
		got, ok := w.pending(key).newer(tc.cached)
		g.Expect(ok).To(Equal(tc.ok), "cached %s at %s", tc.cached.UID, tc.cached.ResourceVersion)
		g.Expect(got).To(Equal(tc.want))
	}

	_, ok := w.pending(types.NamespacedName{Namespace: "ns", Name: "b"}).newer(object("b", "u3", "1"))
	g.Expect(ok).To(BeFalse(), "nothing written for b")
	w.record(object("c", "u4", "not-a-number"), "x")
	g.Expect(w.byKey).NotTo(HaveKey(types.NamespacedName{Namespace: "ns", Name: "c"}), "a version that is not a revision is not kept")
}

// The informer showing a write, or a later version, drops it at once; an
// older version keeps it; a deleted object's write goes. A reconcile that
// took the write before its read keeps it when the informer shows it
// between the two: its copy, read just before, may be the older one.
func TestStatusWritesDroppedOnceShown(t *testing.T) {
	g := NewWithT(t)
	w := newStatusWrites[string]()
	key := types.NamespacedName{Namespace: "ns", Name: "a"}
	w.record(object("a", "u1", "120"), "starting")
	w.shown(object("a", "u1", "119"))
	taken := w.pending(key)
	st, ok := taken.newer(object("a", "u1", "100"))
	g.Expect(ok).To(BeTrue(), "an older version does not show the write")
	g.Expect(st).To(Equal("starting"))

	w.shown(object("a", "u1", "121"))
	g.Expect(w.byKey).NotTo(HaveKey(key), "a later version shows it")
	st, ok = taken.newer(object("a", "u1", "119"))
	g.Expect(ok).To(BeTrue(), "taken before the read: the stale copy still gets the write")
	g.Expect(st).To(Equal("starting"))

	w.record(object("b", "u2", "7"), "x")
	w.forget(object("b", "u0", "9"))
	g.Expect(w.byKey).To(HaveLen(1), "a namesake deleted before it is another object")
	w.forget(object("b", "u2", "7"))
	g.Expect(w.byKey).To(BeEmpty())
}

// A status change of the counters alone waits for the period since the
// last write; with any other change the status goes out at once, counters
// included.
func TestCountersPacedStateAtOnce(t *testing.T) {
	g := NewWithT(t)
	p := newStatusRefresh(time.Hour)
	before := &virtv1alpha1.XenHostStatus{ResidentVMs: 1, Evacuation: &virtv1alpha1.Evacuation{MovedVMs: 1}}

	after := before.DeepCopy()
	after.ResidentVMs = 2
	g.Expect(pace(p, "h", before, after, setHostCounters)).To(BeZero(), "nothing written yet: at once")
	g.Expect(after.ResidentVMs).To(BeEquivalentTo(2))

	p.wrote("h")
	for _, change := range []func(*virtv1alpha1.XenHostStatus){
		func(st *virtv1alpha1.XenHostStatus) { st.ResidentVMs = 3 },
		func(st *virtv1alpha1.XenHostStatus) { st.Evacuation.MovedVMs = 2 },
	} {
		after = before.DeepCopy()
		change(after)
		g.Expect(pace(p, "h", before, after, setHostCounters)).To(BeNumerically(">", 59*time.Minute))
		g.Expect(after).To(Equal(before), "held back: the status as it was")
	}

	after = before.DeepCopy()
	after.ResidentVMs, after.Enabled = 3, new(false)
	g.Expect(pace(p, "h", before, after, setHostCounters)).To(BeZero(), "a change of state: at once")
	g.Expect(after.ResidentVMs).To(BeEquivalentTo(3), "with the counters as they are")

	g.Expect(pace(p, "h", before, before.DeepCopy(), setHostCounters)).To(BeZero(), "no change: nothing to hold")
}

// While an operation runs, its progress and the devices it plugs wait for
// its end (a change of state) or the period; without an operation in flight
// a device plugged is written at once.
func TestInFlightPacedUntilTheOperationEnds(t *testing.T) {
	g := NewWithT(t)
	p := newStatusRefresh(time.Hour)
	p.wrote("vm")
	before := &virtv1alpha1.XenVMStatus{
		Operation:         &virtv1alpha1.Operation{Name: "start"},
		Disks:             []virtv1alpha1.DiskStatus{{Name: "root"}},
		NetworkInterfaces: []virtv1alpha1.NetworkInterfaceStatus{{Name: "eth0"}},
	}
	plugged := before.DeepCopy()
	plugged.Operation.Progress = 40
	plugged.Disks[0].Attached, plugged.NetworkInterfaces[0].Attached = true, true
	after := plugged.DeepCopy()
	g.Expect(pace(p, "vm", before, after, setInFlight)).To(BeNumerically(">", 0))
	g.Expect(after).To(Equal(before), "held back while the start runs")

	ended := plugged.DeepCopy()
	ended.Operation, ended.PowerState = nil, virtv1alpha1.PowerStateRunning
	after = ended.DeepCopy()
	g.Expect(pace(p, "vm", before, after, setInFlight)).To(BeZero(), "the end goes out at once")
	g.Expect(after).To(Equal(ended), "with the devices plugged")

	idle := before.DeepCopy()
	idle.Operation = nil
	after = idle.DeepCopy()
	after.NetworkInterfaces[0].Attached = true
	g.Expect(pace(p, "vm", idle, after, setInFlight)).To(BeZero(), "a hot-plug outside an operation: at once")
	g.Expect(after.NetworkInterfaces[0].Attached).To(BeTrue())
}

// The status patch, applied to the object as the API server stores it,
// gives the status the reconcile wrote, whatever it added, changed or
// cleared; it carries nothing but the status.
func TestStatusPatchCarriesTheStatusAlone(t *testing.T) {
	// stored sets up the status the API server holds (the Running XenVM's
	// when nil), change the reconcile's edit of it.
	running := func(*virtv1alpha1.XenVMStatus) {}
	withOperation := func(s *virtv1alpha1.XenVMStatus) {
		s.Operation = &virtv1alpha1.Operation{Name: "clean_shutdown", TaskRef: "OpaqueRef:1", Progress: 40}
	}
	for name, tc := range map[string]struct {
		stored, change func(*virtv1alpha1.XenVMStatus)
	}{
		"a condition changes": {running, func(s *virtv1alpha1.XenVMStatus) {
			setCondition(&s.Conditions, 2, "Ready", metav1.ConditionFalse, "PowerStateMismatch", "VM is Halted")
		}},
		"fields cleared": {running, func(s *virtv1alpha1.XenVMStatus) {
			s.IPAddresses, s.ResidentOn, s.PowerState = nil, "", virtv1alpha1.PowerStateHalted
			s.NetworkInterfaces[0].IPAddresses = nil
		}},
		"a list shrinks": {running, func(s *virtv1alpha1.XenVMStatus) { s.Conditions = s.Conditions[:2] }},
		"an operation starts": {running, func(s *virtv1alpha1.XenVMStatus) {
			s.Operation = &virtv1alpha1.Operation{Name: "hard_shutdown"}
		}},
		"an operation's member cleared": {withOperation, func(s *virtv1alpha1.XenVMStatus) { s.Operation.TaskRef = "" }},
		"an operation ends":             {withOperation, func(s *virtv1alpha1.XenVMStatus) { s.Operation = nil }},
		"from nothing": {
			func(s *virtv1alpha1.XenVMStatus) { *s = virtv1alpha1.XenVMStatus{} },
			func(s *virtv1alpha1.XenVMStatus) { *s = decodeRunningXenVM(t, 7).Status },
		},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			stored := decodeRunningXenVM(t, 7)
			tc.stored(&stored.Status)
			before := stored.DeepCopy()
			obj := stored.DeepCopy()
			obj.Spec.Template = "not sent"
			tc.change(&obj.Status)

			p := statusFrom{before: xenVMStatus(before), statusOf: xenVMStatus}
			g.Expect(p.Type()).To(Equal(types.MergePatchType))
			data, err := p.Data(obj)
			g.Expect(err).NotTo(HaveOccurred())
			var top map[string]json.RawMessage
			g.Expect(json.Unmarshal(data, &top)).To(Succeed())
			g.Expect(top).To(HaveLen(1))
			g.Expect(top).To(HaveKey("status"))

			storedJSON, err := json.Marshal(stored)
			g.Expect(err).NotTo(HaveOccurred())
			patched, err := jsonpatch.MergePatch(storedJSON, data)
			g.Expect(err).NotTo(HaveOccurred())
			got := &virtv1alpha1.XenVM{}
			g.Expect(json.Unmarshal(patched, got)).To(Succeed())
			objJSON, err := json.Marshal(obj)
			g.Expect(err).NotTo(HaveOccurred())
			want := &virtv1alpha1.XenVM{}
			g.Expect(json.Unmarshal(objJSON, want)).To(Succeed()) // times as JSON keeps them
			g.Expect(got.Status).To(Equal(want.Status))
			g.Expect(got.Spec).To(Equal(stored.Spec), "the spec is not in the patch")
		})
	}
}

// BenchmarkStatusPatch compares the patch of one changed condition of a
// Running XenVM made from the whole objects (client.MergeFrom) and from the
// statuses alone.
func BenchmarkStatusPatch(b *testing.B) {
	before := decodeRunningXenVM(b, 7)
	obj := before.DeepCopy()
	setCondition(&obj.Status.Conditions, 1, "PowerStateSynced", metav1.ConditionFalse, "PowerStateMismatch", "VM is Halted")
	for name, p := range map[string]client.Patch{
		"whole-objects": client.MergeFrom(before),
		"status-alone":  statusFrom{before: xenVMStatus(before), statusOf: xenVMStatus},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Data(obj); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
