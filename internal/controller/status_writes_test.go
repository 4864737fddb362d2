package controller

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
)

// A reconcile that runs before the informer shows its last status write
// starts from that write; once the cache shows it (or a later version), the
// cached object is what counts again.
func TestStatusWritesOverrideOnlyOlderCopies(t *testing.T) {
	g := NewWithT(t)
	w := newStatusWrites[string]()
	w.record("a", "120", "starting")

	for _, tc := range []struct {
		cached string
		want   string
		ok     bool
	}{
		{cached: "100", want: "starting", ok: true}, // the cache lags: our write wins
		{cached: "119", want: "starting", ok: true},
		{cached: "120", ok: false}, // caught up: the record goes
		{cached: "100", ok: false}, // and does not come back
	} {
		got, ok := w.newer("a", tc.cached)
		g.Expect(ok).To(Equal(tc.ok), "cached at %s", tc.cached)
		g.Expect(got).To(Equal(tc.want))
	}

	_, ok := w.newer("b", "1")
	g.Expect(ok).To(BeFalse(), "nothing written for b")
	w.record("c", "not-a-number", "x")
	_, ok = w.newer("c", "1")
	g.Expect(ok).To(BeFalse(), "versions that are not revisions are never compared")
}

// The informer showing a write, or a later version, drops it at once; an
// older version keeps it; a deleted object's write goes.
func TestStatusWritesDroppedOnceShown(t *testing.T) {
	g := NewWithT(t)
	w := newStatusWrites[string]()
	w.record("a", "120", "starting")
	w.shown("a", "119")
	st, ok := w.newer("a", "100")
	g.Expect(ok).To(BeTrue(), "an older version does not show the write")
	g.Expect(st).To(Equal("starting"))
	w.shown("a", "121")
	g.Expect(w.byUID).NotTo(HaveKey(BeEquivalentTo("a")), "a later version shows it")

	w.record("b", "7", "x")
	w.forget("b")
	g.Expect(w.byUID).To(BeEmpty())
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
