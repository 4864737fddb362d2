package controller

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
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
	var networks map[string]string
	if g, ok := s.conn.Cache.GuestOf(s.vm); ok && s.vm.PowerState == xenapi.PowerStateRunning {
		networks = g.Networks
		st.IPAddresses = ipAddresses(networks)
	}
	st.NetworkInterfaces = r.observeNICs(s, networks)
	st.Disks = r.observeDisks(s)
}

// observeNICs reports the interfaces spec.networkInterfaces names.
func (r *XenVMReconciler) observeNICs(s *vmScope, networks map[string]string) []virtv1alpha1.NetworkInterfaceStatus {
	if len(s.obj.Spec.NetworkInterfaces) == 0 {
		return nil
	}
	byDevice := map[int32]*xenapi.VIF{}
	for _, v := range s.conn.Cache.VIFsOf(s.vm) {
		byDevice[vmservice.DeviceNumber(v.Device)] = v
	}
	var out []virtv1alpha1.NetworkInterfaceStatus
	for _, n := range planNICs(s.obj.Spec.NetworkInterfaces) {
		vif, ok := byDevice[n.device]
		if !ok {
			continue
		}
		st := virtv1alpha1.NetworkInterfaceStatus{Name: n.Name, Device: n.device, MACAddress: vif.MAC,
			Attached: vif.CurrentlyAttached}
		if net, ok := s.conn.Cache.Networks.Get(vif.Network); ok {
			st.Network = net.NameLabel
		}
		prefix := vif.Device + "/"
		st.IPAddresses = ipAddresses(maps.Collect(func(yield func(string, string) bool) {
			for k, v := range networks {
				if strings.HasPrefix(k, prefix) && !yield(k, v) {
					return
				}
			}
		}))
		out = append(out, st)
	}
	return out
}

// observeDisks reports the root disk and the disks spec.disks names.
func (r *XenVMReconciler) observeDisks(s *vmScope) []virtv1alpha1.DiskStatus {
	have := r.disksOf(s)
	var out []virtv1alpha1.DiskStatus
	for _, name := range slices.Sorted(maps.Keys(have.vdis)) {
		if name != virtv1alpha1.RootDiskName && specDisk(s.obj, name) == nil {
			continue
		}
		vdi := have.vdis[name]
		st := virtv1alpha1.DiskStatus{Name: name, VDIUUID: vdi.UUID, Size: resource.NewQuantity(vdi.VirtualSize, resource.BinarySI)}
		if sr, ok := s.conn.Cache.SRs.Get(vdi.SR); ok {
			st.Storage = sr.NameLabel
		}
		if vbd := have.vbds[name]; vbd != nil {
			st.Device, st.Attached = max(vmservice.DeviceNumber(vbd.Userdevice), 0), vbd.CurrentlyAttached
		}
		out = append(out, st)
	}
	return out
}

// ipAddresses lists the guest's addresses from VM_guest_metrics.networks
// ("<device>/ip", "<device>/ipv4/<n>", "<device>/ipv6/<n>"), IPv4 first, in
// device order, link-local ones last, without duplicates or values that
// are not addresses.
func ipAddresses(networks map[string]string) []string {
	var v4, v6, local []string
	seen := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(networks)) {
		v := networks[k]
		ip, err := netip.ParseAddr(v)
		if err != nil || seen[v] {
			continue
		}
		is4 := ip.Is4() && (strings.HasSuffix(k, "/ip") || strings.Contains(k, "/ipv4/"))
		is6 := ip.Is6() && strings.Contains(k, "/ipv6/")
		switch {
		case (is4 || is6) && ip.IsLinkLocalUnicast():
			local = append(local, v)
		case is4:
			v4 = append(v4, v)
		case is6:
			v6 = append(v6, v)
		default:
			continue
		}
		seen[v] = true
	}
	return slices.Concat(v4, v6, local)
}

// usableAddress tells whether an address counts for spec.readiness: not
// link-local, and inside the prefix when there is one.
func usableAddress(addr string, prefix *netip.Prefix) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.IsLinkLocalUnicast() {
		return false
	}
	return prefix == nil || prefix.Contains(ip)
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

// readiness is Ready: the first of HostAvailable, Provisioned,
// NetworkSynced, DisksSynced, BootstrapReady (unless they only wait for a
// halt) and
// PowerStateSynced that is not true, then the address spec.readiness
// waits for; or true with the desired power state.
func readiness(obj *virtv1alpha1.XenVM) (metav1.ConditionStatus, string, string) {
	if !obj.DeletionTimestamp.IsZero() {
		return metav1.ConditionFalse, virtv1alpha1.ReasonDeleting, "The XenVM is being deleted"
	}
	if obj.Spec.Observed() {
		for _, t := range []string{virtv1alpha1.ConditionHostAvailable, virtv1alpha1.ConditionProvisioned} {
			if c := meta.FindStatusCondition(obj.Status.Conditions, t); c == nil || c.Status != metav1.ConditionTrue {
				return metav1.ConditionFalse, reasonOf(c), messageOf(c, t)
			}
		}
		return metav1.ConditionTrue, virtv1alpha1.ReasonObserved, fmt.Sprintf("VM is %s (observed, not managed)", obj.Status.PowerState)
	}
	for _, t := range []string{virtv1alpha1.ConditionHostAvailable, virtv1alpha1.ConditionProvisioned,
		virtv1alpha1.ConditionNetworkSynced, virtv1alpha1.ConditionDisksSynced, virtv1alpha1.ConditionBootstrapReady,
		virtv1alpha1.ConditionPowerStateSynced} {
		c := meta.FindStatusCondition(obj.Status.Conditions, t)
		devices := t == virtv1alpha1.ConditionNetworkSynced || t == virtv1alpha1.ConditionDisksSynced ||
			t == virtv1alpha1.ConditionBootstrapReady
		switch {
		case c == nil && devices:
			// Only XenVMs that declare devices have these.
		case c == nil:
			return metav1.ConditionFalse, virtv1alpha1.ReasonTransitioning, t + " is not known yet"
		case c.Status != metav1.ConditionTrue && devices && c.Reason == virtv1alpha1.ReasonConfigurationPending:
			// Devices that wait for the next halt do not make the VM unready.
		case c.Status != metav1.ConditionTrue:
			return metav1.ConditionFalse, c.Reason, c.Message
		}
	}
	if msg, ok := addressReady(obj); !ok {
		return metav1.ConditionFalse, virtv1alpha1.ReasonWaitingForAddress, msg
	}
	return metav1.ConditionTrue, virtv1alpha1.ReasonInSync, fmt.Sprintf("VM is %s", desiredPower(obj))
}

// addressReady tells whether spec.readiness's address wait is over.
func addressReady(obj *virtv1alpha1.XenVM) (string, bool) {
	rd := obj.Spec.Readiness
	if rd == nil || !rd.WaitForAddress || desiredPower(obj) != virtv1alpha1.PowerStateRunning {
		return "", true
	}
	var prefix *netip.Prefix
	want := "an IP address that is not link-local"
	if rd.AddressCIDR != "" {
		p, err := netip.ParsePrefix(rd.AddressCIDR)
		if err != nil {
			return fmt.Sprintf("spec.readiness.addressCIDR %q is not a CIDR", rd.AddressCIDR), false
		}
		prefix = &p
		want += " in " + p.String()
	}
	if slices.ContainsFunc(obj.Status.IPAddresses, func(a string) bool { return usableAddress(a, prefix) }) {
		return "", true
	}
	return "Waiting for the guest to report " + want, false
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

// reasonOf and messageOf are a condition's reason and message, or say that
// it is not known yet.
func reasonOf(c *metav1.Condition) string {
	if c == nil {
		return virtv1alpha1.ReasonTransitioning
	}
	return c.Reason
}

func messageOf(c *metav1.Condition, typ string) string {
	if c == nil {
		return typ + " is not known yet"
	}
	return c.Message
}
