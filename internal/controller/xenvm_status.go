package controller

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// observe reports what xapi says of the VM: its power state, host and
// addresses. It runs after every reconcile that found the VM.
func (r *XenVMReconciler) observe(s *vmScope) {
	if s.vm == nil || s.conn == nil {
		return
	}
	st := &s.obj.Status
	st.PowerState = virtv1alpha1.PowerState(s.vm.PowerState)
	st.ResidentOn = ""
	if h, ok := s.conn.Cache.Host(s.vm.ResidentOn); ok && s.vm.PowerState != xenapi.PowerStateHalted {
		st.ResidentOn = h.NameLabel
	}
	st.IPAddresses = nil
	if g, ok := s.conn.Cache.GuestOf(s.vm); ok && s.vm.PowerState == xenapi.PowerStateRunning {
		st.IPAddresses = ipAddresses(g.Networks)
	}
}

// ipAddresses lists the guest's addresses from VM_guest_metrics.networks
// ("<device>/ip", "<device>/ipv4/<n>", "<device>/ipv6/<n>"), IPv4 first, in
// device order, without duplicates or values that are not addresses.
func ipAddresses(networks map[string]string) []string {
	var v4, v6 []string
	seen := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(networks)) {
		v := networks[k]
		ip, err := netip.ParseAddr(v)
		if err != nil || seen[v] {
			continue
		}
		switch {
		case ip.Is4() && (strings.HasSuffix(k, "/ip") || strings.Contains(k, "/ipv4/")):
			v4 = append(v4, v)
		case ip.Is6() && strings.Contains(k, "/ipv6/"):
			v6 = append(v6, v)
		default:
			continue
		}
		seen[v] = true
	}
	return append(v4, v6...)
}

// summarize sets Ready and the phase from the other conditions: the one
// place that writes them.
func (r *XenVMReconciler) summarize(s *vmScope) {
	obj := s.obj
	status, reason, msg := readiness(obj)
	if !obj.DeletionTimestamp.IsZero() && s.note != "" {
		msg += ": " + s.note
	}
	s.cond(virtv1alpha1.ConditionReady, status, reason, "%s", msg)
	obj.Status.Phase = phaseOf(obj)
}

// readiness is Ready: the first of HostAvailable, Provisioned and
// PowerStateSynced that is not true, or true with the desired power state.
func readiness(obj *virtv1alpha1.XenVM) (metav1.ConditionStatus, string, string) {
	if !obj.DeletionTimestamp.IsZero() {
		return metav1.ConditionFalse, virtv1alpha1.ReasonDeleting, "The XenVM is being deleted"
	}
	for _, t := range []string{virtv1alpha1.ConditionHostAvailable, virtv1alpha1.ConditionProvisioned, virtv1alpha1.ConditionPowerStateSynced} {
		c := meta.FindStatusCondition(obj.Status.Conditions, t)
		switch {
		case c == nil:
			return metav1.ConditionFalse, virtv1alpha1.ReasonTransitioning, t + " is not known yet"
		case c.Status != metav1.ConditionTrue:
			return metav1.ConditionFalse, c.Reason, c.Message
		}
	}
	return metav1.ConditionTrue, virtv1alpha1.ReasonInSync, fmt.Sprintf("VM is %s", desiredPower(obj))
}

// phaseOf is the one-word summary of a XenVM.
func phaseOf(obj *virtv1alpha1.XenVM) virtv1alpha1.Phase {
	st := &obj.Status
	prov := meta.FindStatusCondition(st.Conditions, virtv1alpha1.ConditionProvisioned)
	switch {
	case !obj.DeletionTimestamp.IsZero():
		return virtv1alpha1.PhaseDeleting
	case prov != nil && prov.Status == metav1.ConditionFalse && prov.Reason != virtv1alpha1.ReasonProvisioning:
		return virtv1alpha1.PhaseFailed
	case st.UUID == "" && prov == nil:
		return virtv1alpha1.PhasePending
	case st.UUID == "":
		return virtv1alpha1.PhaseProvisioning
	case st.Operation != nil:
		switch vmservice.PowerOp(st.Operation.Name) {
		case vmservice.OpCleanShutdown, vmservice.OpHardShutdown:
			return virtv1alpha1.PhaseStopping
		case vmservice.OpSuspend:
			return virtv1alpha1.PhaseSuspending
		}
		return virtv1alpha1.PhaseStarting
	}
	switch st.PowerState {
	case virtv1alpha1.PowerStateRunning:
		return virtv1alpha1.PhaseRunning
	case virtv1alpha1.PowerStateHalted:
		return virtv1alpha1.PhaseHalted
	case virtv1alpha1.PowerStateSuspended:
		return virtv1alpha1.PhaseSuspended
	case virtv1alpha1.PowerStatePaused:
		return virtv1alpha1.PhasePaused
	}
	return st.Phase
}
