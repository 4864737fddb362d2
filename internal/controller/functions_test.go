package controller

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// The pure functions of the controllers, table by table. The envtest suite
// covers how they are used.

func TestNextStep(t *testing.T) {
	const (
		halted    = xenapi.PowerStateHalted
		running   = xenapi.PowerStateRunning
		paused    = xenapi.PowerStatePaused
		suspended = xenapi.PowerStateSuspended
		soft      = virtv1alpha1.PowerOffSoft
		hard      = virtv1alpha1.PowerOffHard
		trySoft   = virtv1alpha1.PowerOffTrySoft
	)
	for _, tc := range []struct {
		from xenapi.PowerState
		to   virtv1alpha1.PowerState
		mode virtv1alpha1.PowerOffMode
		want vmservice.PowerOp // "" for none
	}{
		{halted, virtv1alpha1.PowerStateHalted, trySoft, ""},
		{halted, virtv1alpha1.PowerStateRunning, trySoft, vmservice.OpStart},
		{halted, virtv1alpha1.PowerStatePaused, trySoft, vmservice.OpStartPaused},
		{halted, virtv1alpha1.PowerStateSuspended, trySoft, vmservice.OpStart},
		{running, virtv1alpha1.PowerStateRunning, trySoft, ""},
		{running, virtv1alpha1.PowerStateHalted, trySoft, vmservice.OpCleanShutdown},
		{running, virtv1alpha1.PowerStateHalted, soft, vmservice.OpCleanShutdown},
		{running, virtv1alpha1.PowerStateHalted, hard, vmservice.OpHardShutdown},
		{running, virtv1alpha1.PowerStatePaused, trySoft, vmservice.OpPause},
		{running, virtv1alpha1.PowerStateSuspended, trySoft, vmservice.OpSuspend},
		{paused, virtv1alpha1.PowerStateRunning, trySoft, vmservice.OpUnpause},
		{paused, virtv1alpha1.PowerStateSuspended, trySoft, vmservice.OpUnpause},
		{paused, virtv1alpha1.PowerStateHalted, soft, vmservice.OpUnpause},
		{paused, virtv1alpha1.PowerStateHalted, trySoft, vmservice.OpHardShutdown},
		{paused, virtv1alpha1.PowerStateHalted, hard, vmservice.OpHardShutdown},
		{paused, virtv1alpha1.PowerStatePaused, hard, ""},
		{suspended, virtv1alpha1.PowerStateRunning, trySoft, vmservice.OpResume},
		{suspended, virtv1alpha1.PowerStatePaused, trySoft, vmservice.OpResumePaused},
		{suspended, virtv1alpha1.PowerStateHalted, soft, vmservice.OpHardShutdown},
		{suspended, virtv1alpha1.PowerStateSuspended, trySoft, ""},
	} {
		got, ok := nextStep(tc.from, tc.to, tc.mode)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("nextStep(%s, %s, %s) = %q, %t; want %q", tc.from, tc.to, tc.mode, got, ok, tc.want)
		}
		if ok && tc.to != virtv1alpha1.PowerStateSuspended && tc.mode != soft &&
			string(resultOf(got, tc.from)) != string(tc.to) && tc.from != suspended {
			t.Errorf("%s from %s leads to %s, not %s", got, tc.from, resultOf(got, tc.from), tc.to)
		}
	}
}

func TestIPAddresses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		networks map[string]string
		want     []string
	}{
		{"none", nil, nil},
		{"old and new agent keys for one address", map[string]string{"0/ip": "10.0.0.5", "0/ipv4/0": "10.0.0.5"}, []string{"10.0.0.5"}},
		{"IPv4 first, by device", map[string]string{
			"1/ipv4/0": "10.1.0.2", "0/ipv6/0": "fe80::1", "0/ipv4/0": "10.0.0.2", "0/ipv4/1": "10.0.0.3",
		}, []string{"10.0.0.2", "10.0.0.3", "10.1.0.2", "fe80::1"}},
		{"values that are not addresses are dropped", map[string]string{"0/ip": "", "0/ipv4/0": "pending", "0/ipv6/0": "::1"}, []string{"::1"}},
		{"keys that are not addresses are ignored", map[string]string{"0/mtu": "1500", "0/ipv4/0": "10.0.0.9"}, []string{"10.0.0.9"}},
		{"an IPv4 address under an IPv6 key is not taken", map[string]string{"0/ipv6/0": "10.0.0.1"}, nil},
		{"link-local addresses last", map[string]string{"0/ipv4/0": "169.254.3.4", "0/ipv4/1": "10.0.0.7", "0/ipv6/0": "fe80::2"},
			[]string{"10.0.0.7", "169.254.3.4", "fe80::2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(ipAddresses(tc.networks)).To(Equal(tc.want))
		})
	}
}

func TestDesiredOtherConfig(t *testing.T) {
	o := vmservice.Owner{UID: "u-1", Namespace: "ns", Name: "web"}
	for _, tc := range []struct {
		name             string
		current, entries map[string]string
		plan             vmservice.DiskPlan
		want             map[string]string
	}{{
		name:    "a fresh clone: tags, and the disks pointed at the SR",
		current: map[string]string{"disks": `<provision><disk device="0" size="1" sr="" bootable="true" type="system"/></provision>`},
		plan:    vmservice.DiskPlan{DefaultSR: "sr-1"},
		want: map[string]string{vmservice.TagUID: "u-1", vmservice.TagOwner: "ns/web",
			"disks": `<provision><disk device="0" size="1" sr="sr-1" bootable="true" type="system"/></provision>`},
	}, {
		name:    "the user's entries are set and remembered",
		current: map[string]string{"other": "kept"},
		entries: map[string]string{"team": "web", "cost": "12"},
		want: map[string]string{"other": "kept", "team": "web", "cost": "12", vmservice.TagManagedKeys: "cost,team",
			vmservice.TagUID: "u-1", vmservice.TagOwner: "ns/web"},
	}, {
		name: "entries removed from the spec are removed, others' keys stay",
		current: map[string]string{"other": "kept", "team": "web", "cost": "12", vmservice.TagManagedKeys: "cost,team",
			vmservice.TagUID: "u-1", vmservice.TagOwner: "ns/web"},
		entries: map[string]string{"team": "db"},
		want: map[string]string{"other": "kept", "team": "db", vmservice.TagManagedKeys: "team",
			vmservice.TagUID: "u-1", vmservice.TagOwner: "ns/web"},
	}, {
		name:    "without an SR the disks stay as they are",
		current: map[string]string{"disks": `<provision><disk sr=""/></provision>`},
		want:    map[string]string{"disks": `<provision><disk sr=""/></provision>`, vmservice.TagUID: "u-1", vmservice.TagOwner: "ns/web"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			before := map[string]string{}
			for k, v := range tc.current {
				before[k] = v
			}
			g.Expect(vmservice.DesiredOtherConfig(tc.current, tc.entries, o, tc.plan)).To(Equal(tc.want))
			g.Expect(tc.current).To(Equal(before), "the current map is not modified")
		})
	}
}

func TestReadinessAndPhase(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: typ + " " + reason}
	}
	ok := func(typ string) metav1.Condition { return cond(typ, metav1.ConditionTrue, "OK") }
	now := metav1.Now()
	for _, tc := range []struct {
		name        string
		status      virtv1alpha1.XenVMStatus
		deleting    bool
		wantReady   metav1.ConditionStatus
		wantReason  string
		wantPhase   virtv1alpha1.Phase
		specPowerSt virtv1alpha1.PowerState
	}{{
		name:      "nothing known yet",
		wantReady: metav1.ConditionFalse, wantReason: virtv1alpha1.ReasonTransitioning, wantPhase: virtv1alpha1.PhasePending,
	}, {
		name: "host unavailable comes first",
		status: virtv1alpha1.XenVMStatus{Conditions: []metav1.Condition{
			cond(virtv1alpha1.ConditionHostAvailable, metav1.ConditionFalse, virtv1alpha1.ReasonAuthenticationFailed),
			cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonProvisioning)}},
		wantReady: metav1.ConditionFalse, wantReason: virtv1alpha1.ReasonAuthenticationFailed, wantPhase: virtv1alpha1.PhaseProvisioning,
	}, {
		name: "a template that does not exist is a failure",
		status: virtv1alpha1.XenVMStatus{Conditions: []metav1.Condition{ok(virtv1alpha1.ConditionHostAvailable),
			cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonTemplateNotFound)}},
		wantReady: metav1.ConditionFalse, wantReason: virtv1alpha1.ReasonTemplateNotFound, wantPhase: virtv1alpha1.PhaseFailed,
	}, {
		name: "an operation in flight names the phase",
		status: virtv1alpha1.XenVMStatus{UUID: "u", PowerState: virtv1alpha1.PowerStateRunning,
			Operation: &virtv1alpha1.Operation{Name: string(vmservice.OpCleanShutdown), StartTime: now},
			Conditions: []metav1.Condition{ok(virtv1alpha1.ConditionHostAvailable), ok(virtv1alpha1.ConditionProvisioned),
				cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonTransitioning)}},
		wantReady: metav1.ConditionFalse, wantReason: virtv1alpha1.ReasonTransitioning, wantPhase: virtv1alpha1.PhaseStopping,
	}, {
		name: "in sync",
		status: virtv1alpha1.XenVMStatus{UUID: "u", PowerState: virtv1alpha1.PowerStateSuspended,
			Conditions: []metav1.Condition{ok(virtv1alpha1.ConditionHostAvailable), ok(virtv1alpha1.ConditionProvisioned),
				ok(virtv1alpha1.ConditionPowerStateSynced)}},
		specPowerSt: virtv1alpha1.PowerStateSuspended,
		wantReady:   metav1.ConditionTrue, wantReason: virtv1alpha1.ReasonInSync, wantPhase: virtv1alpha1.PhaseSuspended,
	}, {
		name: "deleting wins",
		status: virtv1alpha1.XenVMStatus{UUID: "u", Conditions: []metav1.Condition{ok(virtv1alpha1.ConditionHostAvailable),
			ok(virtv1alpha1.ConditionProvisioned), ok(virtv1alpha1.ConditionPowerStateSynced)}},
		deleting:  true,
		wantReady: metav1.ConditionFalse, wantReason: virtv1alpha1.ReasonDeleting, wantPhase: virtv1alpha1.PhaseDeleting,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			obj := &virtv1alpha1.XenVM{Status: tc.status}
			obj.Spec.PowerState = tc.specPowerSt
			if tc.deleting {
				obj.DeletionTimestamp = &now
			}
			status, reason, _ := readiness(obj)
			g.Expect(status).To(Equal(tc.wantReady))
			g.Expect(reason).To(Equal(tc.wantReason))
			g.Expect(phaseOf(obj)).To(Equal(tc.wantPhase))
		})
	}
}

func TestCanonical(t *testing.T) {
	o := vmservice.Owner{UID: "u-1", Namespace: "ns", Name: "web"}
	tagged := map[string]string{vmservice.TagUID: "u-1"}
	bare := &xenapi.VM{Ref: "A", UUID: "a", NameLabel: o.InstallName(), IsTemplate: true, OtherConfig: map[string]string{}}
	claimed := &xenapi.VM{Ref: "B", UUID: "b", IsTemplate: true, OtherConfig: tagged}
	installed := &xenapi.VM{Ref: "C", UUID: "c", OtherConfig: tagged}
	recorded := &xenapi.VM{Ref: "D", UUID: "d", OtherConfig: map[string]string{}}
	pending := &xenapi.VM{Ref: "E", NameLabel: o.InstallName(), IsTemplate: true}
	for _, tc := range []struct {
		name       string
		vms        []*xenapi.VM
		uuid       string
		keep       string
		duplicates []string
	}{
		{"none", nil, "", "", nil},
		{"one clone", []*xenapi.VM{bare}, "", "A", nil},
		{"the furthest installed is kept", []*xenapi.VM{bare, installed, claimed}, "", "C", []string{"A", "B"}},
		{"the recorded UUID wins", []*xenapi.VM{installed, recorded}, "d", "D", []string{"C"}},
		{"a clone only this process knows of is never a duplicate", []*xenapi.VM{pending, installed}, "", "C", nil},
		{"it is kept while it is the only one", []*xenapi.VM{pending}, "", "E", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			keep, dups := vmservice.Canonical(tc.vms, o, tc.uuid)
			if tc.keep == "" {
				g.Expect(keep).To(BeNil())
			} else {
				g.Expect(keep.Ref).To(Equal(tc.keep))
			}
			var refs []string
			for _, d := range dups {
				refs = append(refs, d.Ref)
			}
			g.Expect(refs).To(Equal(tc.duplicates))
		})
	}
}

func TestFailuresBackOffPerObject(t *testing.T) {
	g := NewWithT(t)
	now := time.Unix(1000, 0)
	f := newFailures(wait.Backoff{Duration: failureBackoff.Duration, Factor: 2, Steps: 1 << 30, Cap: 5 * time.Minute})
	f.now = func() time.Time { return now }
	boom := errors.New("HOST_NOT_ENOUGH_FREE_MEMORY")

	d, _ := f.wait("vm-a", 1)
	g.Expect(d).To(BeZero(), "nothing failed yet")
	var waits []time.Duration
	for range 8 {
		waits = append(waits, f.failed("vm-a", 1, boom))
	}
	g.Expect(waits).To(Equal([]time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 300 * time.Second, 300 * time.Second, 300 * time.Second}))
	d, msg := f.wait("vm-a", 1)
	g.Expect(d).To(Equal(5 * time.Minute))
	g.Expect(msg).To(Equal(boom.Error()))
	d, _ = f.wait("vm-b", 1)
	g.Expect(d).To(BeZero(), "per object")

	// Attempts in the first five minutes of a call that always fails: the
	// schedule the envtest spec checks against the simulator.
	attempts, at := 0, time.Duration(0)
	for at < 5*time.Minute {
		attempts++
		at += f.failed("vm-c", 1, boom)
	}
	g.Expect(attempts).To(Equal(5), "five attempts, two calls each (start, task.destroy)")

	now = now.Add(time.Minute)
	d, _ = f.wait("vm-a", 1)
	g.Expect(d).To(Equal(4 * time.Minute))
	d, _ = f.wait("vm-a", 2)
	g.Expect(d).To(BeZero(), "a new generation tries at once")
	g.Expect(f.failed("vm-a", 2, boom)).To(Equal(10*time.Second), "and starts over")
	f.succeeded("vm-a")
	d, _ = f.wait("vm-a", 2)
	g.Expect(d).To(BeZero())
}

func TestSoonest(t *testing.T) {
	g := NewWithT(t)
	r := func(d time.Duration) ctrl.Result { return ctrl.Result{RequeueAfter: d} }
	g.Expect(soonest(r(0), r(0))).To(Equal(r(0)))
	g.Expect(soonest(r(0), r(time.Second))).To(Equal(r(time.Second)))
	g.Expect(soonest(r(time.Minute), r(0))).To(Equal(r(time.Minute)))
	g.Expect(soonest(r(time.Minute), r(time.Second))).To(Equal(r(time.Second)))
}

func TestPlanNICs(t *testing.T) {
	n := func(name string, device ...int32) virtv1alpha1.NetworkInterface {
		out := virtv1alpha1.NetworkInterface{Name: name, Network: "lan"}
		if len(device) > 0 {
			out.Device = &device[0]
		}
		return out
	}
	for _, tc := range []struct {
		name string
		nics []virtv1alpha1.NetworkInterface
		want map[string]int32
	}{
		{"none", nil, map[string]int32{}},
		{"list order", []virtv1alpha1.NetworkInterface{n("a"), n("b"), n("c")}, map[string]int32{"a": 0, "b": 1, "c": 2}},
		{"given devices are kept free", []virtv1alpha1.NetworkInterface{n("a"), n("b", 0), n("c"), n("d", 2)},
			map[string]int32{"a": 1, "b": 0, "c": 3, "d": 2}},
		{"a gap stays a gap", []virtv1alpha1.NetworkInterface{n("a", 4), n("b")}, map[string]int32{"a": 4, "b": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]int32{}
			for _, p := range planNICs(tc.nics) {
				got[p.Name] = p.device
			}
			NewWithT(t).Expect(got).To(Equal(tc.want))
		})
	}
}

func TestNextNICAction(t *testing.T) {
	const lan, wan = "OpaqueRef:lan", "OpaqueRef:wan"
	vif := func(network string, attached bool, ops ...string) *xenapi.VIF {
		return &xenapi.VIF{Device: "0", Network: network, MAC: "02:00:00:00:00:01", CurrentlyAttached: attached, AllowedOperations: ops}
	}
	want := &plannedNIC{NetworkInterface: virtv1alpha1.NetworkInterface{Name: "eth0"}}
	wantMAC := &plannedNIC{NetworkInterface: virtv1alpha1.NetworkInterface{Name: "eth0", MACAddress: "02:00:00:00:00:09"}}
	running, halted, paused := xenapi.PowerStateRunning, xenapi.PowerStateHalted, xenapi.PowerStatePaused
	for _, tc := range []struct {
		name  string
		vif   *xenapi.VIF
		want  *plannedNIC
		net   string
		power xenapi.PowerState
		out   nicAction
	}{
		{"nothing either way", nil, nil, "", running, nicNone},
		{"missing on a halted VM: create", nil, want, lan, halted, nicCreate},
		{"missing on a running VM: create (then plug)", nil, want, lan, running, nicCreate},
		{"created, not plugged, hotplug possible", vif(lan, false, "attach", "plug"), want, lan, running, nicPlug},
		{"created, not plugged, no hotplug", vif(lan, false), want, lan, running, nicWait},
		{"as wanted", vif(lan, true, "unplug"), want, lan, running, nicNone},
		{"as wanted on a halted VM", vif(lan, false), want, lan, halted, nicNone},
		{"on another network: move", vif(wan, true, "unplug"), want, lan, running, nicMove},
		{"on another network, no hotplug: wait", vif(wan, true), want, lan, running, nicWait},
		{"on another network, halted: move", vif(wan, false), want, lan, halted, nicMove},
		{"not wanted, plugged: unplug", vif(lan, true, "unplug"), nil, "", running, nicUnplug},
		{"not wanted, plugged, no hotplug: wait", vif(lan, true), nil, "", running, nicWait},
		{"not wanted, unplugged: destroy", vif(lan, false), nil, "", running, nicDestroy},
		{"another MAC, halted: destroy (and create after)", vif(lan, false), wantMAC, lan, halted, nicDestroy},
		{"the same MAC in other case: as wanted", vif(lan, false),
			&plannedNIC{NetworkInterface: virtv1alpha1.NetworkInterface{MACAddress: "02:00:00:00:00:01"}}, lan, halted, nicNone},
		{"paused: any change waits", nil, want, lan, paused, nicWait},
		{"paused and as wanted", vif(lan, true), want, lan, paused, nicNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(nextNICAction(tc.vif, tc.want, tc.net, tc.power)).To(Equal(tc.out))
		})
	}
}

func TestAddressReady(t *testing.T) {
	vm := func(rd *virtv1alpha1.Readiness, addrs ...string) *virtv1alpha1.XenVM {
		return &virtv1alpha1.XenVM{Spec: virtv1alpha1.XenVMSpec{PowerState: virtv1alpha1.PowerStateRunning, Readiness: rd},
			Status: virtv1alpha1.XenVMStatus{IPAddresses: addrs}}
	}
	waits := &virtv1alpha1.Readiness{WaitForAddress: true}
	inNet := &virtv1alpha1.Readiness{WaitForAddress: true, AddressCIDR: "10.0.0.0/8"}
	for _, tc := range []struct {
		name string
		vm   *virtv1alpha1.XenVM
		want bool
	}{
		{"not asked", vm(nil), true},
		{"asked, no address", vm(waits), false},
		{"asked, only link-local", vm(waits, "169.254.1.1", "fe80::1"), false},
		{"asked, a real address", vm(waits, "169.254.1.1", "192.0.2.5"), true},
		{"asked in a CIDR, an address outside", vm(inNet, "192.0.2.5"), false},
		{"asked in a CIDR, an address inside", vm(inNet, "192.0.2.5", "10.2.3.4"), true},
		{"an IPv6 global address counts", vm(waits, "2001:db8::5"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ok := addressReady(tc.vm)
			NewWithT(t).Expect(ok).To(Equal(tc.want))
		})
	}
}

func TestInstanceID(t *testing.T) {
	const uuid, hash = "3f1c5c1e-0000-4000-8000-000000000001", "0123456789abcdef"
	drive := func(h, id string) *xenapi.VDI {
		return &xenapi.VDI{OtherConfig: map[string]string{vmservice.TagConfigHash: h, vmservice.TagInstanceID: id}}
	}
	for _, tc := range []struct {
		name   string
		meta   map[string]string
		status *virtv1alpha1.CloudInitStatus
		old    *xenapi.VDI
		want   string
	}{
		{"the first drive: the VM's UUID", nil, nil, nil, uuid},
		{"the first drive, created but not written before a crash", nil, nil, drive("", ""), uuid},
		{"a drive with the same files keeps its id", nil, nil, drive(hash, "kept"), "kept"},
		{"the status's id for the same files", nil, &virtv1alpha1.CloudInitStatus{Hash: hash, InstanceID: "st"}, nil, "st"},
		{"changed files: a new id", nil, &virtv1alpha1.CloudInitStatus{Hash: "other", InstanceID: uuid}, nil, uuid + "-01234567"},
		{"the spec's id wins", map[string]string{"instance-id": "mine"}, nil, drive(hash, "kept"), "mine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &vmScope{obj: &virtv1alpha1.XenVM{Spec: virtv1alpha1.XenVMSpec{CloudInit: &virtv1alpha1.CloudInit{MetaData: tc.meta}},
				Status: virtv1alpha1.XenVMStatus{CloudInit: tc.status}}, vm: &xenapi.VM{UUID: uuid}}
			NewWithT(t).Expect(instanceID(s, hash, tc.old)).To(Equal(tc.want))
		})
	}
}
