package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// plannedNIC is an interface of the spec with its device number.
type plannedNIC struct {
	virtv1alpha1.NetworkInterface
	device int32
}

// planNICs gives each interface of the spec its device: its own, or the
// lowest number the others leave free, in list order.
func planNICs(nics []virtv1alpha1.NetworkInterface) []plannedNIC {
	used := map[int32]bool{}
	for _, n := range nics {
		if n.Device != nil {
			used[*n.Device] = true
		}
	}
	out := make([]plannedNIC, 0, len(nics))
	var next int32
	for _, n := range nics {
		p := plannedNIC{NetworkInterface: n}
		if n.Device != nil {
			p.device = *n.Device
		} else {
			for used[next] {
				next++
			}
			p.device = next
			used[next] = true
		}
		out = append(out, p)
	}
	return out
}

// nicAction is the next thing to do to one interface.
type nicAction string

const (
	nicNone    nicAction = ""
	nicCreate  nicAction = "create"
	nicPlug    nicAction = "plug"
	nicUnplug  nicAction = "unplug"
	nicDestroy nicAction = "destroy"
	nicMove    nicAction = "move"
	// nicWait means the change waits for the VM's next halt.
	nicWait nicAction = "wait"
)

// nextNICAction is the next step for the interface at one device: vif is
// what the VM has there (nil for nothing), want what the spec asks (nil
// for nothing, networkRef resolved), running whether the VM runs. A change
// xapi cannot make live (the guest cannot hotplug) waits for the next halt.
func nextNICAction(vif *xenapi.VIF, want *plannedNIC, networkRef string, power xenapi.PowerState) nicAction {
	running := power == xenapi.PowerStateRunning
	if power != xenapi.PowerStateHalted && !running {
		if vif == nil && want == nil || vif != nil && want != nil && nicMatches(vif, want, networkRef) {
			return nicNone
		}
		return nicWait // paused or suspended: devices change at the next halt
	}
	canUnplug := func() nicAction {
		if vif.Allows("unplug") {
			return nicUnplug
		}
		return nicWait
	}
	switch {
	case vif == nil && want == nil:
		return nicNone
	case vif == nil:
		return nicCreate
	case want == nil || want.MACAddress != "" && !strings.EqualFold(vif.MAC, want.MACAddress):
		// Not wanted, or wanted with another MAC: remove it (and create
		// the wanted one after).
		if running && vif.CurrentlyAttached {
			return canUnplug()
		}
		return nicDestroy
	case vif.Network != networkRef:
		if running && vif.CurrentlyAttached && !vif.Allows("unplug") {
			return nicWait
		}
		return nicMove
	case running && !vif.CurrentlyAttached:
		if vif.Allows("plug") {
			return nicPlug
		}
		return nicWait
	}
	return nicNone
}

func nicMatches(vif *xenapi.VIF, want *plannedNIC, networkRef string) bool {
	return vif.Network == networkRef && (want.MACAddress == "" || strings.EqualFold(vif.MAC, want.MACAddress))
}

// reconcileNetwork makes the VM's interfaces those of
// spec.networkInterfaces, one step per interface per reconcile; it owns
// NetworkSynced. Without the list, the VM's interfaces are left alone.
func (r *XenVMReconciler) reconcileNetwork(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if s.vm == nil || s.obj.Spec.NetworkInterfaces == nil || len(s.vm.CurrentOperations) > 0 {
		return ctrl.Result{}, nil
	}
	if !s.conn.Service.Settled(s.owner) {
		return s.awaitOwnWrites()
	}
	planned := planNICs(s.obj.Spec.NetworkInterfaces)
	networks := map[string]*xenapi.Network{}
	for _, n := range planned {
		net, p := byNameOrUUID(s.conn.Cache.Networks, n.Network, "network", func(n *xenapi.Network) string { return n.UUID },
			virtv1alpha1.ReasonNetworkNotFound, virtv1alpha1.ReasonNetworkAmbiguous)
		if p != nil {
			s.failed = true
			s.stop()
			s.cond(virtv1alpha1.ConditionNetworkSynced, metav1.ConditionFalse, p.reason, "Interface %s: %s", n.Name, p.msg)
			return ctrl.Result{RequeueAfter: requeuePoolProblem}, nil
		}
		networks[n.Name] = net
	}
	return r.applyNICs(ctx, s, planned, networks)
}

// applyNICs takes the next step for every device that needs one.
func (r *XenVMReconciler) applyNICs(ctx context.Context, s *vmScope, planned []plannedNIC, networks map[string]*xenapi.Network) (ctrl.Result, error) {
	have := map[int32]*xenapi.VIF{}
	for _, v := range s.conn.Cache.VIFsOf(s.vm) {
		have[vmservice.DeviceNumber(v.Device)] = v
	}
	want := map[int32]*plannedNIC{}
	for i := range planned {
		want[planned[i].device] = &planned[i]
	}
	devices := slices.Concat(slices.Collect(maps.Keys(have)), slices.Collect(maps.Keys(want)))
	slices.Sort(devices)
	devices = slices.Compact(devices)
	var waiting []string
	more := false // a write after which the device needs another step
	for _, d := range devices {
		vif, w := have[d], want[d]
		netRef := ""
		if w != nil {
			netRef = networks[w.Name].Ref
		}
		action := nextNICAction(vif, w, netRef, s.vm.PowerState)
		if action == nicWait {
			waiting = append(waiting, describeNIC(d, w))
			continue
		}
		if action == nicNone {
			continue
		}
		if err := r.doNIC(ctx, s, action, vif, w, networks); err != nil {
			return r.fail(s, virtv1alpha1.ConditionNetworkSynced, virtv1alpha1.ReasonConfigurationFailed,
				fmt.Sprintf("%s interface %d", action, d), err)
		}
		more = more || !nicActionFinal(action, w, s.vm.PowerState)
	}
	return r.devicesDone(s, virtv1alpha1.ConditionNetworkSynced, more, waiting, "The VM's interfaces are as the spec says")
}

// nicActionFinal tells whether an interface is as the spec says once an
// action is done: an interface created on a running VM is plugged next, one
// unplugged is destroyed next, one destroyed for another MAC is created
// again.
func nicActionFinal(action nicAction, w *plannedNIC, power xenapi.PowerState) bool {
	switch action {
	case nicCreate:
		return power != xenapi.PowerStateRunning
	case nicUnplug:
		return false
	case nicDestroy:
		return w == nil
	}
	return true
}

func (r *XenVMReconciler) doNIC(ctx context.Context, s *vmScope, action nicAction, vif *xenapi.VIF, w *plannedNIC,
	networks map[string]*xenapi.Network) error {
	svc := s.conn.Service
	switch action {
	case nicCreate:
		ctrl.LoggerFrom(ctx).Info("Creating interface", "name", w.Name, "device", w.device)
		return svc.CreateNIC(ctx, s.vm, s.owner, vmservice.NIC{Device: strconv.Itoa(int(w.device)), Network: networks[w.Name], MAC: w.MACAddress})
	case nicPlug:
		return svc.Plug(ctx, vif, s.owner, true)
	case nicUnplug:
		return svc.Plug(ctx, vif, s.owner, false)
	case nicDestroy:
		return svc.RemoveNIC(ctx, vif, s.owner)
	case nicMove:
		return svc.MoveNIC(ctx, vif, s.owner, networks[w.Name])
	}
	return nil
}

func describeNIC(device int32, w *plannedNIC) string {
	if w == nil {
		return fmt.Sprintf("removing interface %d", device)
	}
	return fmt.Sprintf("interface %s (device %d)", w.Name, device)
}

// devicesDone ends the interfaces' or disks' phase: after writes that need
// another step it stops (their events wake the XenVM, and the next step
// reads what they made); changes that wait for a halt go to
// RestartRequired. Writes that complete their devices let the phases after
// go on: a VM whose interfaces were just created starts at once.
func (r *XenVMReconciler) devicesDone(s *vmScope, cond string, more bool, waiting []string, inSync string) (ctrl.Result, error) {
	switch {
	case more:
		s.stop()
		s.cond(cond, metav1.ConditionFalse, virtv1alpha1.ReasonTransitioning, "Changing the VM's devices")
		return ctrl.Result{RequeueAfter: requeueCacheLag}, nil
	case len(waiting) > 0:
		s.pending = append(s.pending, waiting...)
		s.cond(cond, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationPending,
			"Waiting for the VM's next halt (the guest cannot change them live): %s", strings.Join(waiting, ", "))
		return ctrl.Result{}, nil
	}
	s.cond(cond, metav1.ConditionTrue, virtv1alpha1.ReasonInSync, "%s", inSync)
	return ctrl.Result{}, nil
}
