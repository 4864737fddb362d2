package xapisim

import (
	"fmt"
	"time"
)

func init() {
	explicitHandlers["VDI.destroy"] = explicit{fn: vdiDestroy, async: true, mutating: true}
	explicitHandlers["VBD.destroy"] = explicit{fn: vbdDestroy, async: true, mutating: true}
}

// ---- SRs and PBDs ----------------------------------------------------------

// newSR creates an SR with one PBD per host in hosts, plugged, as a pool's
// SRs are once their PBDs are plugged (xapi_sr.ml introduce, xapi_pbd.ml
// create_common: other_config {}). deviceConfig gives each PBD's
// device_config.
func (s *Server) newSR(fields map[string]any, hosts []*object, deviceConfig func(host *object) map[string]any) *object {
	base := map[string]any{
		"allowed_operations": srAllowedOperations(),
		"other_config":       map[string]any{},
		"sm_config":          map[string]any{},
	}
	for k, v := range fields {
		base[k] = v
	}
	sr := s.db.create("SR", base)
	for _, h := range hosts {
		s.db.create("PBD", map[string]any{
			"host": h.ref, "SR": sr.ref, "device_config": deviceConfig(h),
			"currently_attached": true, "other_config": map[string]any{},
		})
	}
	return sr
}

// srAllowedOperations are the operations of an SR whose PBDs are plugged
// (xapi_sr_operations.ml valid_operations): every operation but destroy and
// forget, less those the SM driver lacks a capability for. The nfs and lvm
// drivers (sm NFSSR.py, LVHDSR.py CAPABILITIES) have the same: no
// VDI_INTRODUCE, no VDI_REVERT.
func srAllowedOperations() []any {
	return []any{"scan", "plug", "unplug", "vdi_create", "vdi_destroy", "vdi_resize", "vdi_clone",
		"vdi_snapshot", "vdi_mirror", "vdi_enable_cbt", "vdi_disable_cbt", "vdi_data_destroy",
		"vdi_list_changed_blocks", "vdi_set_on_boot", "update", "pbd_create", "pbd_destroy"}
}

// ---- what SM makes of a new disk -------------------------------------------

// The VHD sizes sm uses (libs/sm/vhdutil.py, lvhdutil.py, lvutil.py).
const (
	vhdBlockSize     = 2 * mib
	vhdMinSize       = 2 * mib
	lvmSizeIncrement = 4 * mib
	lvhdMaxSize      = 2 * 1024 * 1024 * mib // lvhdutil.MSIZE
)

func roundUp(divisor, v int64) int64 {
	if v == 0 {
		v = 1
	}
	return (v + divisor - 1) / divisor * divisor
}

// vhdOverheadEmpty is vhdutil.calcOverheadEmpty: the metadata of an empty
// VHD of that virtual size.
func vhdOverheadEmpty(size int64) int64 {
	sizeMB := size / mib
	overhead := int64(3 * 1024)
	overhead += sizeMB / 2 * 4
	overhead = roundUp(512, overhead)
	overhead += sizeMB / 2 / 8
	return roundUp(4096, overhead)
}

// smDisk is what the SR's SM driver reports for a new VHD disk of the
// requested size, as VDI.create records it through SM's db_introduce
// (xapi_vdi.ml create; sm VDI.py _db_introduce): the size rounded up to
// whole VHD blocks, the space the new disk takes, and its sm_config. A file
// SR (nfs) stores a thin VHD whose only content is its metadata (FileSR.py
// create; sm_config passes only base_mirror and key_hash through); an LVM SR
// (lvm, LVHDSR.py) allocates a logical volume for the whole disk and keeps
// the caller's sm_config with vdi_type.
func smDisk(srType string, size int64, smConfig map[string]any) (virtual, physical int64, config map[string]any) {
	virtual = roundUp(vhdBlockSize, max(size, vhdMinSize))
	config = map[string]any{}
	if srType == "lvm" {
		for k, v := range smConfig {
			config[k] = v
		}
		config["vdi_type"] = "vhd"
		bitmap := roundUp(vhdBlockSize, virtual) / vhdBlockSize * 4096
		return virtual, roundUp(lvmSizeIncrement, virtual+vhdOverheadEmpty(lvhdMaxSize)+bitmap), config
	}
	for _, k := range []string{"base_mirror", "key_hash"} {
		if v, ok := smConfig[k]; ok && v != "" {
			config[k] = v
		}
	}
	return virtual, vhdOverheadEmpty(virtual), config
}

// ---- VDIs ------------------------------------------------------------------

// vdiSpec is what VDI.create takes (xapi_vdi.ml create).
type vdiSpec struct {
	nameLabel, nameDescription string
	size                       int64
	vdiType                    string
	sharable, readOnly         bool
	otherConfig, smConfig      map[string]any
}

// createVDI is VDI.create: SM creates the disk and introduces it
// (introduce_dbonly: managed, on_boot persist, location the new uuid, no
// snapshot, no parent), then xapi sets other_config, sharable, tags and
// xenstore_data, and computes allowed_operations.
func (s *Server) createVDI(sr *object, spec vdiSpec) *object {
	virtual, physical, smConfig := smDisk(sr.str("type"), spec.size, spec.smConfig)
	uuid := newUUID()
	otherConfig := spec.otherConfig
	if otherConfig == nil {
		otherConfig = map[string]any{}
	}
	vdi := s.db.create("VDI", map[string]any{
		"uuid": uuid, "name_label": spec.nameLabel, "name_description": spec.nameDescription,
		"SR": sr.ref, "virtual_size": virtual, "physical_utilisation": physical, "type": spec.vdiType,
		"sharable": spec.sharable, "read_only": spec.readOnly, "other_config": otherConfig,
		"storage_lock": false, "location": uuid, "managed": true, "missing": false, "parent": nullRef,
		"xenstore_data": map[string]any{}, "sm_config": smConfig, "is_a_snapshot": false,
		"snapshot_of": nullRef, "snapshot_time": epoch, "tags": []any{}, "allow_caching": false,
		"on_boot": "persist", "metadata_of_pool": nullRef, "metadata_latest": false,
		"is_tools_iso": false, "cbt_enabled": false,
	})
	// SM's _update/_updateStats: the SR's allocation and the space used.
	s.db.update(sr, "virtual_allocation", sr.int("virtual_allocation")+virtual,
		"physical_utilisation", sr.int("physical_utilisation")+physical)
	s.refreshVDIOperations(vdi)
	return vdi
}

// cloneVDI is VDI.clone (or VDI.copy into sr): a new disk whose name,
// description, type, sharable, other_config, xenstore_data, on_boot,
// allow_caching and tags come from the original (xapi_vdi.ml
// snapshot_and_clone), the rest from SM as for a new disk.
func (s *Server) cloneVDI(vdi, sr *object) *object {
	if sr == nil {
		sr, _ = s.db.get("SR", vdi.str("SR"))
	}
	clone := s.createVDI(sr, vdiSpec{
		nameLabel: vdi.str("name_label"), nameDescription: vdi.str("name_description"),
		size: vdi.int("virtual_size"), vdiType: vdi.str("type"), sharable: vdi.bool("sharable"),
		otherConfig: copyValue(vdi.fields["other_config"]).(map[string]any),
	})
	s.db.update(clone, "xenstore_data", copyValue(vdi.fields["xenstore_data"]), "on_boot", vdi.str("on_boot"),
		"allow_caching", vdi.bool("allow_caching"), "tags", copyValue(vdi.fields["tags"]))
	return clone
}

// destroyVDI is VDI.destroy once its checks passed: SM deletes the disk,
// the VBDs go and VMs suspended onto it lose their suspend_VDI
// (xapi_vdi.ml destroy_and_data_destroy_common).
func (s *Server) destroyVDI(vdi *object) {
	for _, vbdRef := range vdi.set("VBDs") {
		if vbd, ok := s.db.get("VBD", vbdRef.(string)); ok {
			s.db.destroy(vbd)
		}
	}
	for _, vm := range s.db.objects["VM"] {
		if vm.str("suspend_VDI") == vdi.ref {
			s.db.update(vm, "suspend_VDI", nullRef)
		}
	}
	if sr, ok := s.db.get("SR", vdi.str("SR")); ok {
		s.db.update(sr, "virtual_allocation", sr.int("virtual_allocation")-vdi.int("virtual_size"),
			"physical_utilisation", sr.int("physical_utilisation")-vdi.int("physical_utilisation"))
	}
	s.db.destroy(vdi)
}

// vdiOperations are the operations xapi lists in VDI.allowed_operations
// (xapi_globs.ml pre_ely_vdi_operations without blocked and force_unlock).
var vdiOperations = []string{"clone", "copy", "resize", "resize_online", "snapshot", "destroy", "forget",
	"update", "generate_config"}

// refreshVDIOperations recomputes VDI.allowed_operations as xapi_vdi.ml
// check_operation_error does for the simulator's disks: what the SR's SM
// driver cannot do is left out (neither nfs nor lvm resizes online; lvm does
// not generate configs), and while a VBD has the disk attached read-write
// only clone and snapshot remain.
func (s *Server) refreshVDIOperations(vdi *object) {
	sr, _ := s.db.get("SR", vdi.str("SR"))
	attached := false
	for _, ref := range vdi.set("VBDs") {
		if vbd, ok := s.db.get("VBD", ref.(string)); ok && vbd.bool("currently_attached") && vbd.str("mode") == "RW" {
			attached = true
		}
	}
	allowed := []any{}
	for _, op := range vdiOperations {
		switch {
		case op == "resize_online":
			continue
		case op == "generate_config" && (sr == nil || sr.str("type") != "nfs"):
			continue
		case !vdi.bool("managed"):
			continue
		case attached && op != "clone" && op != "snapshot":
			continue
		case op == "snapshot" && vdi.bool("sharable"):
			continue
		}
		allowed = append(allowed, op)
	}
	setIfChanged(s.db, vdi, "allowed_operations", allowed)
}

// vdiDestroy is VDI.destroy: refused while a VBD has the disk attached;
// otherwise its VBDs go with it (xapi_vdi.ml).
func vdiDestroy(c *callCtx) (any, error) {
	vdi, err := c.s.db.mustGet("VDI", c.str(0))
	if err != nil {
		return nil, err
	}
	for _, ref := range vdi.set("VBDs") {
		if vbd, ok := c.s.db.get("VBD", ref.(string)); ok && vbd.bool("currently_attached") {
			return nil, newFailure(errVDIInUse, vdi.ref, "destroy")
		}
	}
	c.s.destroyVDI(vdi)
	return nil, nil
}

// ---- VBDs ------------------------------------------------------------------

// newVBD is VBD.create (xapi_vbd.ml create) and VBD copy
// (xapi_vbd_helpers.ml copy): no device until the VM runs, not attached,
// status 0, no runtime properties; fields gives the caller's values.
func (s *Server) newVBD(fields map[string]any) {
	base := map[string]any{
		"current_operations": map[string]any{}, "storage_lock": false, "device": "",
		"currently_attached": false, "status_code": int64(0), "status_detail": "",
		"runtime_properties": map[string]any{}, "qos_algorithm_type": "",
		"qos_algorithm_params": map[string]any{}, "qos_supported_algorithms": []any{},
		"other_config": map[string]any{}, "empty": false,
	}
	for k, v := range fields {
		base[k] = v
	}
	vbd := s.db.create("VBD", base)
	s.refreshVBDOperations(vbd)
	if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok {
		s.refreshVDIOperations(vdi)
	}
}

// refreshVBDOperations recomputes VBD.allowed_operations as
// xapi_vbd_helpers.ml valid_operations does: only CDs insert and eject,
// plug and unplug need a running VM (and, for an HVM guest, PV drivers),
// pause and unpause a running or paused one, and a VBD that is not
// unpluggable never unplugs.
func (s *Server) refreshVBDOperations(vbd *object) {
	vm, _ := s.db.get("VM", vbd.str("VM"))
	allowed := []any{"attach"}
	if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok && !vdi.bool("managed") {
		allowed = []any{}
	} else if vm != nil {
		ps := vm.str("power_state")
		cd := vbd.str("type") == "CD"
		if cd && ps != "Suspended" {
			if vbd.bool("empty") {
				allowed = append(allowed, "insert")
			} else {
				allowed = append(allowed, "eject")
			}
		}
		if ps == "Running" || ps == "Paused" {
			allowed = append(allowed, "pause", "unpause")
		}
		if ps == "Running" && s.hotplugs(vm, "can_use_hotplug_vbd") && (!cd || vm.str("domain_type") != "hvm") {
			if vbd.bool("currently_attached") {
				if vbd.bool("unpluggable") {
					allowed = append(allowed, "unplug", "unplug_force")
				}
			} else {
				allowed = append(allowed, "plug")
			}
		}
	}
	setIfChanged(s.db, vbd, "allowed_operations", allowed)
}

// hotplugs tells whether a running VM's devices can be plugged and
// unplugged: always for PV-family guests, for HVM guests when the guest
// agent reports PV drivers (the tristate can_use_hotplug_* is "yes", or
// "unspecified" with PV_drivers_detected).
func (s *Server) hotplugs(vm *object, tristate string) bool {
	if vm.str("domain_type") != "hvm" {
		return true
	}
	gm, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics"))
	if !ok {
		return false
	}
	switch gm.str(tristate) {
	case "yes":
		return true
	case "no":
		return false
	}
	return gm.bool("PV_drivers_detected")
}

// vbdDestroy is VBD.destroy: refused while the VBD is attached
// (xapi_vbd_helpers.ml destroy).
func vbdDestroy(c *callCtx) (any, error) {
	vbd, err := c.s.db.mustGet("VBD", c.str(0))
	if err != nil {
		return nil, err
	}
	if vbd.bool("currently_attached") {
		vmUUID := ""
		if vm, ok := c.s.db.get("VM", vbd.str("VM")); ok {
			vmUUID = vm.str("uuid")
		}
		return nil, newFailure(errOperationNotAllowed,
			fmt.Sprintf("VBD '%s' still attached to '%s'", vbd.str("uuid"), vmUUID))
	}
	c.s.db.destroy(vbd)
	if vdi, ok := c.s.db.get("VDI", vbd.str("VDI")); ok {
		c.s.refreshVDIOperations(vdi)
	}
	return nil, nil
}

// suspendImageSize is the suspend image xapi makes for a VM
// (xapi_xenops.ml suspend): 1.2 × 1.05 × memory_static_max plus 100 MiB.
func suspendImageSize(vm *object) int64 {
	return int64(float64(vm.int("memory_static_max"))*1.2*1.05) + 104857600
}

// now is the time xapi records, to the second as its database keeps it.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }
