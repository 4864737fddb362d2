package xapisim

import (
	"strings"
)

// VM snapshots, checkpoints and reverts, as xapi_vm_snapshot.ml,
// xapi_vm_clone.ml and message_forwarding.ml make them.

func init() {
	explicitHandlers["VM.snapshot"] = explicit{fn: vmSnapshot, async: true, mutating: true, defaults: []any{[]any{}}}
	explicitHandlers["VM.checkpoint"] = explicit{fn: vmCheckpoint, async: true, mutating: true}
	explicitHandlers["VM.revert"] = explicit{fn: vmRevert, async: true, mutating: true}
}

// vmSnapshot is VM.snapshot(vm, new_name[, ignore_vdis]): in any power
// state, the VM shows "snapshot" while xapi_vm_clone.ml clone
// (Disk_op_snapshot) snapshots its disks one by one, checking for a cancel
// before each, then makes the snapshot: a Halted template with
// is_a_snapshot, snapshot_of the VM and the VM's other_config and tags
// (message_forwarding.ml snapshot, xapi_vm_snapshot.ml snapshot).
func vmSnapshot(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	name := c.str(1)
	ignore := map[string]bool{}
	for _, v := range c.args[2].([]any) {
		ignore[v.(string)] = true
	}
	s := c.s
	return c.vmOperation(vm, "snapshot", s.copySpec(vm, ignore, func() (any, error) {
		snap, err := s.cloneVM(vm, name, diskSnapshot, nil, ignore, nil)
		if err != nil {
			return nil, err
		}
		s.refreshAllowedOperations(snap)
		return snap.ref, nil
	}))
}

// vmCheckpoint is VM.checkpoint(vm, new_name) (xapi_vm_snapshot.ml
// checkpoint): Running, Paused or Suspended. A running VM's disks must all
// be on SRs that snapshot (SR_OPERATION_NOT_SUPPORTED [vm]); it is
// suspended (a suspend image made, the VM staying resident on its host as
// force_state_reset does during a checkpoint), its disks and suspend image
// snapshotted (Disk_op_checkpoint), then resumed in a new domain, the image
// destroyed. The snapshot of a running or suspended VM is Suspended with a
// snapshot of the image; snapshot_info records the power state only for a
// running VM.
func vmCheckpoint(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	name := c.str(1)
	s := c.s
	return c.vmOperation(vm, "checkpoint", opSpec{progress: xenopsProgress, cancellable: true, apply: func() (any, error) {
		if vm.str("power_state") != "Running" {
			snap, err := s.cloneVM(vm, name, diskCheckpoint, nil, nil, map[string]any{})
			if err != nil {
				return nil, err
			}
			s.refreshAllowedOperations(snap)
			return snap.ref, nil
		}
		for _, ref := range vm.set("VBDs") {
			vbd, ok := s.db.get("VBD", ref.(string))
			if !ok || vbd.str("type") == "CD" {
				continue
			}
			if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok {
				if sr, ok := s.db.get("SR", vdi.str("SR")); ok && !smHas(sr.str("type"), "VDI_SNAPSHOT") {
					return nil, newFailure(errSROperationNotSupported, vm.ref)
				}
			}
		}
		image, err := s.suspendImage(vm)
		if err != nil {
			return nil, err
		}
		s.db.update(vm, "suspend_VDI", image.ref)
		snap, err := s.cloneVM(vm, name, diskCheckpoint, nil, nil,
			map[string]any{"power-state-at-snapshot": "Running", "disk-snapshot-type": "crash_consistent"})
		// The resume: the image goes, the guest runs on in a new domain.
		s.destroyVDI(image)
		s.nextDomid++
		s.db.update(vm, "domid", s.nextDomid)
		if err != nil {
			return nil, err
		}
		s.refreshAllowedOperations(snap)
		return snap.ref, nil
	}})
}

// snapshotVDI is VDI.snapshot as xapi_vm_clone.ml calls it for each disk:
// message_forwarding.ml marks the SR for vdi_snapshot (its driver must have
// VDI_SNAPSHOT: SR_OPERATION_NOT_SUPPORTED [sr]) and the disk for snapshot
// (VDI_IS_SHARABLE [vdi] for a sharable disk), then SM snapshots it as it
// clones it (the same space needed) and xapi records it: the original's
// name, type, other_config and tags, is_a_snapshot, snapshot_of the
// original, snapshot_time now (xapi_vdi.ml snapshot, storage_smapiv1.ml).
func (s *Server) snapshotVDI(vdi *object) (*object, error) {
	sr, err := s.db.mustGet("SR", vdi.str("SR"))
	if err != nil {
		return nil, err
	}
	if f := srOperationError(sr, "vdi_snapshot"); f != nil {
		return nil, f
	}
	if f := s.vdiOperationError(vdi, "snapshot"); f != nil {
		return nil, f
	}
	snap, err := s.cloneVDI(vdi, nil)
	if err != nil {
		return nil, err
	}
	s.db.update(snap, "is_a_snapshot", true, "snapshot_of", vdi.ref, "snapshot_time", now())
	s.refreshVDIOperations(snap)
	return snap, nil
}

// metadataLeftOut are the VM fields Helpers.vm_to_string does not write:
// the database's one-to-many relation sets (read_record's second part).
var metadataLeftOut = map[string]bool{
	"VBDs": true, "VIFs": true, "snapshots": true, "children": true, "consoles": true, "crash_dumps": true,
	"VGPUs": true, "VUSBs": true, "VTPMs": true,
}

// vmMetadata is a copy of vm's fields, as snapshot_metadata keeps them.
func vmMetadata(vm *object) map[string]any {
	out := map[string]any{}
	for k, v := range vm.fields {
		if !metadataLeftOut[k] {
			out[k] = copyValue(v)
		}
	}
	return out
}

// vmMetadataString is Helpers.vm_to_string: the VM's database record as an
// S-expression of (column value) pairs.
func vmMetadataString(vm *object) string {
	var b strings.Builder
	b.WriteByte('(')
	first := true
	for _, f := range vm.class.fields {
		if metadataLeftOut[f.name] {
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteByte('(')
		sexprString(&b, dbColumn("VM", f.name))
		b.WriteByte(' ')
		sexprString(&b, dbString(f.typ, vm.fields[f.name]))
		b.WriteByte(')')
	}
	b.WriteByte(')')
	return b.String()
}

// revertKeeps are the fields xapi_vm_snapshot.ml revert_vm_fields does not
// restore from the snapshot's metadata (do_not_copy): the VM keeps its
// tags, affinity and devices, and its state is reset.
var revertKeeps = map[string]bool{
	"uuid": true, "suspend_VDI": true, "power_state": true, "parent": true, "current_operations": true,
	"allowed_operations": true, "metrics": true, "guest_metrics": true, "resident_on": true, "domid": true,
	"protection_policy": true, "snapshot_schedule": true, "scheduled_to_be_resident_on": true,
	"snapshots": true, "tags": true, "affinity": true, "groups": true, "consoles": true, "VBDs": true,
	"VIFs": true, "VGPUs": true, "VUSBs": true, "VTPMs": true, "attached_PCIs": true,
}

// vmRevert is VM.revert(snapshot) (message_forwarding.ml revert,
// xapi_vm.ml revert, xapi_vm_snapshot.ml revert):
//
//   - the VM is the snapshot's snapshot_of; when that is no VM (a VM that is
//     not a snapshot, or whose VM was destroyed) xapi tries to make the VM
//     again from the metadata, which fails for a non-snapshot:
//     VM_REVERT_FAILED [snapshot; snapshot_of];
//   - the snapshot is marked "revert" (its checks: a VM that is not a
//     snapshot is REVERT_ONLY_ALLOWED_ON_SNAPSHOT), the VM "reverting";
//   - a VM that is not Halted is hard shut down first (VM.hard_shutdown,
//     with its checks: a blocked hard_shutdown fails the revert);
//   - the VM's fields are restored from the snapshot's metadata, but for
//     revertKeeps, ha_always_run false, then a new generation id;
//   - its disk VBDs and CD VBDs go; the disks that were snapshotted and its
//     suspend image are destroyed, disks added since the snapshot are left
//     unattached; the snapshot's disks are cloned (VDI.clone: no SM here
//     has VDI_REVERT) and attached as the snapshot's VBDs are, the other
//     snapshots of each old disk now snapshots of its clone; the snapshot's
//     suspend image is cloned; VIFs are replaced by copies of the
//     snapshot's with their MACs; metrics and guest metrics are copies of
//     the snapshot's; the VM's parent is the snapshot;
//   - the VM ends in the snapshot's power state: Halted, or Suspended for a
//     checkpoint. On a failure it is Halted and the error is
//     VM_REVERT_FAILED [snapshot; vm] but for SR_BACKEND_FAILURE_44.
//
// xapi does not honour a cancel here.
func vmRevert(c *callCtx) (any, error) {
	snap, err := c.vm()
	if err != nil {
		return nil, err
	}
	s := c.s
	vm, ok := s.db.get("VM", snap.str("snapshot_of"))
	if !ok {
		return nil, newFailure(errVMRevertFailed, snap.ref, snap.str("snapshot_of"))
	}
	defer func() {
		if _, alive := s.db.get("VM", vm.ref); alive && c.task != nil {
			if _, ok := vm.strMap("current_operations")[c.task.ref]; ok {
				delete(vm.strMap("current_operations"), c.task.ref)
				s.refreshAllowedOperations(vm)
			}
		}
	}()
	return c.vmOperation(snap, "revert", opSpec{
		progress: []float64{0.1, 0.2, 0.5, 0.6, 0.7, 0.8, 0.9},
		prepare:  func() error { return s.checkVMOperation(vm, "reverting") },
		start: func() {
			vm.strMap("current_operations")[c.task.ref] = "reverting"
			s.refreshAllowedOperations(vm)
		},
		apply: func() (any, error) {
			delete(vm.strMap("current_operations"), c.task.ref)
			if vm.str("power_state") != "Halted" {
				if err := s.checkVMOperation(vm, "hard_shutdown"); err != nil {
					return nil, err
				}
				s.halt(vm)
			}
			err := s.revertVM(snap, vm)
			if err != nil {
				s.halt(vm)
				if f, ok := err.(*Failure); !ok || f.Code != errSRBackendFailure {
					err = newFailure(errVMRevertFailed, snap.ref, vm.ref)
				}
			}
			s.refreshAllowedOperations(vm)
			return nil, err
		},
	})
}

// revertVM restores vm from snap (see vmRevert).
func (s *Server) revertVM(snap, vm *object) error {
	for k, v := range snap.sim.metadata {
		if !revertKeeps[k] {
			vm.fields[k] = copyValue(v)
		}
	}
	vm.fields["ha_always_run"] = false
	if vm.str("generation_id") != "" {
		vm.fields["generation_id"] = newGenerationID(s)
	}
	s.db.touch(vm)

	// revert_vbds: which disks of the VM the snapshot has a snapshot of.
	snapshotted := map[string]bool{}
	for _, ref := range snap.set("VBDs") {
		if vbd, ok := s.db.get("VBD", ref.(string)); ok && vbd.str("type") == "Disk" {
			if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok {
				snapshotted[vdi.str("snapshot_of")] = true
			}
		}
	}
	var doomed []*object
	for _, ref := range vm.set("VBDs") {
		vbd, ok := s.db.get("VBD", ref.(string))
		if !ok {
			continue
		}
		if vbd.str("type") == "Disk" && snapshotted[vbd.str("VDI")] {
			if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok {
				doomed = append(doomed, vdi)
			}
		}
		s.db.destroy(vbd)
	}
	if vdi, ok := s.db.get("VDI", vm.str("suspend_VDI")); ok {
		doomed = append(doomed, vdi)
	}
	for _, vdi := range doomed {
		if sr, ok := s.db.get("SR", vdi.str("SR")); !ok || sr.str("content_type") != "iso" {
			s.destroyVDI(vdi)
		}
	}
	for _, ref := range vm.set("VBDs") { // the disks left unattached
		if vbd, ok := s.db.get("VBD", ref.(string)); ok {
			s.db.destroy(vbd)
		}
	}

	// Clone the snapshot's disks, then its CDs (shared), then its image.
	var made []*object
	fail := func(err error) error {
		for _, m := range made {
			s.destroyVDI(m)
		}
		return err
	}
	type attach struct {
		vbd *object
		vdi string
	}
	var attaches []attach
	var cds []attach
	for _, ref := range snap.set("VBDs") {
		vbd, ok := s.db.get("VBD", ref.(string))
		if !ok {
			continue
		}
		a := attach{vbd: vbd, vdi: vbd.str("VDI")}
		if vbd.str("type") != "Disk" {
			if vbd.bool("empty") {
				a.vdi = nullRef
			}
			cds = append(cds, a)
			continue
		}
		if vdi, ok := s.db.get("VDI", a.vdi); ok && !vbd.bool("empty") {
			clone, err := s.cloneVDI(vdi, nil)
			if err != nil {
				return fail(err)
			}
			made = append(made, clone)
			// The snapshots of the old disk are now snapshots of its clone.
			for _, other := range s.db.all("VDI") {
				if other.str("snapshot_of") == vdi.str("snapshot_of") {
					s.db.update(other, "snapshot_of", clone.ref)
				}
			}
			a.vdi = clone.ref
		} else {
			a.vdi = nullRef
		}
		attaches = append(attaches, a)
	}
	suspendVDI := nullRef
	if image, ok := s.db.get("VDI", snap.str("suspend_VDI")); ok {
		clone, err := s.cloneVDI(image, nil)
		if err != nil {
			return fail(err)
		}
		suspendVDI = clone.ref
	}
	// force_state_reset to the snapshot's power state: Halted devices are
	// detached.
	suspended := snap.str("power_state") == "Suspended"
	for _, a := range append(attaches, cds...) {
		fields := map[string]any{}
		for _, k := range []string{"userdevice", "device", "bootable", "mode", "type", "unpluggable",
			"other_config", "qos_algorithm_type", "qos_algorithm_params"} {
			fields[k] = copyValue(a.vbd.fields[k])
		}
		fields["VM"], fields["VDI"], fields["empty"] = vm.ref, a.vdi, a.vdi == nullRef
		fields["currently_attached"] = a.vbd.bool("currently_attached") && suspended
		s.newVBD(fields)
	}
	s.db.update(vm, "suspend_VDI", suspendVDI)

	// update_vifs_vbds_vgpus_and_vusbs: the VIFs are the snapshot's.
	for _, vif := range s.vifsOf(vm) {
		s.db.destroy(vif)
	}
	for _, ref := range snap.set("VIFs") {
		vif, ok := s.db.get("VIF", ref.(string))
		if !ok {
			continue
		}
		fields := map[string]any{"MAC": vif.str("MAC")}
		for _, k := range []string{"device", "network", "currently_attached", "MTU", "other_config",
			"qos_algorithm_type", "qos_algorithm_params", "locking_mode", "ipv4_allowed", "ipv6_allowed",
			"ipv4_configuration_mode", "ipv4_addresses", "ipv4_gateway", "ipv6_configuration_mode",
			"ipv6_addresses", "ipv6_gateway"} {
			fields[k] = copyValue(vif.fields[k])
		}
		fields["currently_attached"] = vif.bool("currently_attached") && suspended
		_, _ = s.createVIF(vm, fields, false)
	}
	// update_guest_metrics, update_metrics, update_parent.
	s.dropGuestMetrics(vm)
	if m, ok := s.db.get("VM_metrics", vm.str("metrics")); ok {
		s.db.destroy(m)
	}
	s.db.update(vm, "guest_metrics", s.copyRecord("VM_guest_metrics", snap.str("guest_metrics")),
		"metrics", s.copyRecord("VM_metrics", snap.str("metrics")), "parent", snap.ref)
	if suspended {
		s.db.update(vm, "power_state", "Suspended")
	}
	return nil
}
