package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xapisim"
)

// What the operator marks its VMs with (internal/controller/connections.go):
// the XenVM's UID in other_config, and the name a VM has between its clone
// and its tagging.
const (
	tagUID        = "xen-operator.io/uid"
	installPrefix = "xen-operator-install-"
	// operatorOriginator prefixes the operator's session originator
	// (internal/version.Originator).
	operatorOriginator = "xen-operator/"
)

// poolView sorts the simulator's VMs by the XenVM they belong to.
type poolView struct {
	// vms and templates are the VMs and templates carrying a XenVM's UID in
	// their tag or install name, by UID.
	vms, templates map[string][]xapisim.SnapshotVM
	// orphans are the VMs (and templates named as installs) that belong to
	// no XenVM of the run.
	orphans []xapisim.SnapshotVM
	byUUID  map[string]xapisim.SnapshotVM
}

// ownerOf is the UID a VM carries, by tag or else by install name.
func ownerOf(vm xapisim.SnapshotVM) string {
	if uid := vm.OtherConfig[tagUID]; uid != "" {
		return uid
	}
	if uid, ok := strings.CutPrefix(vm.NameLabel, installPrefix); ok {
		return uid
	}
	return ""
}

func viewOf(snap xapisim.Snapshot, uids map[string]string) poolView {
	v := poolView{vms: map[string][]xapisim.SnapshotVM{}, templates: map[string][]xapisim.SnapshotVM{},
		byUUID: map[string]xapisim.SnapshotVM{}}
	for _, vm := range snap.VMs {
		v.byUUID[vm.UUID] = vm
		if vm.IsControlDomain {
			continue
		}
		uid := ownerOf(vm)
		_, known := uids[uid]
		switch {
		case uid == "" && vm.IsTemplate:
			// The pool's own templates.
		case !known:
			v.orphans = append(v.orphans, vm)
		case vm.IsTemplate:
			v.templates[uid] = append(v.templates[uid], vm)
		default:
			v.vms[uid] = append(v.vms[uid], vm)
		}
	}
	return v
}

// converged tells whether a XenVM is Ready in its desired power state and
// the simulator agrees.
func converged(obj *virtv1alpha1.XenVM, v *poolView) bool {
	if !meta.IsStatusConditionTrue(obj.Status.Conditions, virtv1alpha1.ConditionReady) ||
		obj.Status.PowerState != obj.Spec.PowerState || obj.Status.UUID == "" {
		return false
	}
	vm, ok := v.byUUID[obj.Status.UUID]
	return ok && !vm.IsTemplate && vm.PowerState == string(obj.Spec.PowerState) && vm.OtherConfig[tagUID] == string(obj.UID)
}

// evidence says where a XenVM that has not converged is, in the API and in
// the simulator.
func evidence(obj *virtv1alpha1.XenVM, v *poolView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s wants %s: phase %q, status.powerState %q", obj.Name, obj.Spec.PowerState, obj.Status.Phase, obj.Status.PowerState)
	for _, t := range []string{virtv1alpha1.ConditionReady, virtv1alpha1.ConditionHostAvailable,
		virtv1alpha1.ConditionProvisioned, virtv1alpha1.ConditionPowerStateSynced} {
		if c := meta.FindStatusCondition(obj.Status.Conditions, t); c != nil {
			fmt.Fprintf(&b, "; %s=%s %s %q (since %s)", t, c.Status, c.Reason, c.Message, c.LastTransitionTime.UTC().Format(time.TimeOnly))
		}
	}
	if op := obj.Status.Operation; op != nil {
		fmt.Fprintf(&b, "; operation %s (task %s, since %s)", op.Name, op.TaskRef, op.StartTime.UTC().Format(time.TimeOnly))
	}
	uid := string(obj.UID)
	var sim []string
	for _, vm := range append(append([]xapisim.SnapshotVM{}, v.vms[uid]...), v.templates[uid]...) {
		kind := "VM"
		if vm.IsTemplate {
			kind = "template"
		}
		s := fmt.Sprintf("%s %s %q %s", kind, vm.UUID, vm.NameLabel, vm.PowerState)
		if len(vm.CurrentOperations) > 0 {
			s += " doing " + strings.Join(vm.CurrentOperations, ",")
		}
		sim = append(sim, s)
	}
	if len(sim) == 0 {
		sim = []string{"no VM"}
	}
	fmt.Fprintf(&b, "; simulator: %s", strings.Join(sim, "; "))
	return b.String()
}

// listXenVMs lists the run's XenVMs.
func listXenVMs(ctx context.Context, k8s client.Client, ns string) ([]virtv1alpha1.XenVM, error) {
	list := &virtv1alpha1.XenVMList{}
	if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// Sample is the run's state at one moment.
type Sample struct {
	T         float64 `json:"s"`
	Converged int     `json:"converged"`
	Ready     int     `json:"ready"`
	Logins    int64   `json:"logins"`
	Calls     int64   `json:"calls"`
}

// counters are the simulator's counters the report follows.
type counters struct {
	logins, calls, failures int64
	lost, lostAsync         int
}

func countersOf(st xapisim.Stats) counters {
	c := counters{calls: st.CallsTotal, failures: st.FailuresInjected}
	for orig, n := range st.LoginsByOriginator {
		if strings.HasPrefix(orig, operatorOriginator) {
			c.logins += n
		}
	}
	for m, n := range st.ResponsesLost {
		c.lost += n
		if strings.HasPrefix(m, "Async.") {
			c.lostAsync += n
		}
	}
	return c
}

// sampler records the run's state every interval.
type sampler struct {
	mu      sync.Mutex
	samples []Sample
	last    Sample
	done    chan struct{}
	stopped chan struct{}
}

func startSampler(ctx context.Context, interval time.Duration, now func() float64, k8s client.Client, ns string,
	sim *xapisim.Server, uids map[string]string) *sampler {
	s := &sampler{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(s.stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if objs, err := listXenVMs(ctx, k8s, ns); err == nil {
				view := viewOf(sim.Snapshot(), uids)
				c := countersOf(sim.Stats())
				smp := Sample{T: now(), Logins: c.logins, Calls: c.calls}
				for i := range objs {
					if converged(&objs[i], &view) {
						smp.Converged++
					}
					if meta.IsStatusConditionTrue(objs[i].Status.Conditions, virtv1alpha1.ConditionReady) {
						smp.Ready++
					}
				}
				s.mu.Lock()
				s.samples = append(s.samples, smp)
				s.last = smp
				s.mu.Unlock()
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) latest() Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *sampler) stop() []Sample {
	close(s.done)
	<-s.stopped
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// at is the last sample at or before t.
func at(samples []Sample, t float64) Sample {
	var out Sample
	for _, smp := range samples {
		if smp.T > t {
			break
		}
		out = smp
	}
	return out
}

// resumed is the time from fired until more XenVMs were converged than at
// over (the first sample then), or -1.
func resumed(samples []Sample, fired, over float64) float64 {
	base := -1
	for _, smp := range samples {
		switch {
		case smp.T < over:
		case base < 0:
			base = smp.Converged
		case smp.Converged > base:
			return smp.T - fired
		}
	}
	return -1
}

// conditionSummary counts XenVMs by their Ready condition's reason.
func conditionSummary(objs []virtv1alpha1.XenVM) string {
	counts := map[string]int{}
	for _, o := range objs {
		c := meta.FindStatusCondition(o.Status.Conditions, virtv1alpha1.ConditionReady)
		switch {
		case c == nil:
			counts["no Ready yet"]++
		case c.Status == metav1.ConditionTrue:
			counts["Ready"]++
		default:
			counts[c.Reason]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, counts[k])
	}
	return strings.Join(parts, ", ")
}
