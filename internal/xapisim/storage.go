package xapisim

import (
	"bytes"
	"time"
)

func init() {
	// VDI.resize_online is removed from the API the simulator serves (2.23):
	// it answers MESSAGE_REMOVED. Where later xapi brings it back, it needs
	// the SM capability VDI_RESIZE_ONLINE, which no driver in sm has.
	for name, fn := range map[string]func(*callCtx) (any, error){
		"create": vdiCreate, "destroy": vdiDestroy, "resize": vdiResize,
	} {
		explicitHandlers["VDI."+name] = explicit{fn: fn, async: true, mutating: true}
	}
}

// ---- SRs and PBDs ----------------------------------------------------------

// newSR creates an SR with one PBD per host in hosts, plugged, as a pool's
// SRs are once their PBDs are plugged (xapi_sr.ml introduce, xapi_pbd.ml
// create_common: other_config {}). deviceConfig gives each PBD's
// device_config.
func (s *Server) newSR(fields map[string]any, hosts []*object, deviceConfig func(host *object) map[string]any) *object {
	base := map[string]any{
		"other_config": map[string]any{},
		"sm_config":    map[string]any{},
	}
	for k, v := range fields {
		base[k] = v
	}
	base["allowed_operations"] = srAllowedOperations(base["type"].(string))
	sr := s.db.create("SR", base)
	for _, h := range hosts {
		s.db.create("PBD", map[string]any{
			"host": h.ref, "SR": sr.ref, "device_config": deviceConfig(h),
			"currently_attached": true, "other_config": map[string]any{},
		})
	}
	return sr
}

// srOperations are the operations xapi lists in SR.allowed_operations
// (xapi_sr_operations.ml all_ops), each with the SM capability it needs
// (sm_cap_table; xapi fakes clones itself).
var srOperations = []struct{ op, capability string }{
	{"scan", ""}, {"destroy", ""}, {"forget", ""}, {"plug", ""}, {"unplug", ""},
	{"vdi_create", "VDI_CREATE"}, {"vdi_destroy", "VDI_DELETE"}, {"vdi_resize", "VDI_RESIZE"},
	{"vdi_clone", ""}, {"vdi_snapshot", "VDI_SNAPSHOT"}, {"vdi_mirror", "VDI_MIRROR"},
	{"vdi_enable_cbt", "VDI_CONFIG_CBT"}, {"vdi_disable_cbt", "VDI_CONFIG_CBT"},
	{"vdi_data_destroy", "VDI_CONFIG_CBT"}, {"vdi_list_changed_blocks", "VDI_CONFIG_CBT"},
	{"vdi_set_on_boot", "VDI_RESET_ON_BOOT"}, {"vdi_introduce", "VDI_INTRODUCE"}, {"vdi_revert", "VDI_REVERT"},
	{"update", "SR_UPDATE"}, {"pbd_create", ""}, {"pbd_destroy", ""},
}

// srOperationError is xapi_sr_operations.ml valid_operations for an SR
// whose PBDs are all plugged: an operation whose capability the SM driver
// lacks is SR_OPERATION_NOT_SUPPORTED [sr]; destroy and forget are
// SR_HAS_PBD [sr].
func srOperationError(sr *object, op string) *Failure {
	for _, o := range srOperations {
		if o.op == op && o.capability != "" && !smHas(sr.str("type"), o.capability) {
			return newFailure(errSROperationNotSupported, sr.ref)
		}
	}
	if op == "destroy" || op == "forget" {
		return newFailure(errSRHasPBD, sr.ref)
	}
	return nil
}

// srAllowedOperations are the operations of an SR of that type whose PBDs
// are plugged.
func srAllowedOperations(srType string) []any {
	sr := &object{fields: map[string]any{"type": srType}}
	out := []any{}
	for _, o := range srOperations {
		if srOperationError(sr, o.op) == nil {
			out = append(out, o.op)
		}
	}
	return out
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

// createVDI is VDI.create once xapi's checks passed: the SM driver creates
// the disk (smCreate) and introduces it (introduce_dbonly: managed, on_boot
// persist, location the new uuid, no snapshot, no parent), then xapi sets
// other_config, sharable, tags and xenstore_data, and computes
// allowed_operations.
func (s *Server) createVDI(sr *object, spec vdiSpec) (*object, error) {
	uuid := newUUID()
	disk, err := smCreate(sr, uuid, spec.size, spec.smConfig)
	if err != nil {
		return nil, err
	}
	otherConfig := spec.otherConfig
	if otherConfig == nil {
		otherConfig = map[string]any{}
	}
	vdi := s.db.create("VDI", map[string]any{
		"uuid": uuid, "name_label": spec.nameLabel, "name_description": spec.nameDescription,
		"SR": sr.ref, "virtual_size": disk.virtual, "physical_utilisation": disk.physical, "type": spec.vdiType,
		"sharable": spec.sharable, "read_only": spec.readOnly, "other_config": otherConfig,
		"storage_lock": false, "location": uuid, "managed": true, "missing": false, "parent": nullRef,
		"xenstore_data": map[string]any{}, "sm_config": disk.smConfig, "is_a_snapshot": false,
		"snapshot_of": nullRef, "snapshot_time": epoch, "tags": []any{}, "allow_caching": false,
		"on_boot": "persist", "metadata_of_pool": nullRef, "metadata_latest": false,
		"is_tools_iso": false, "cbt_enabled": false,
	})
	// SM's _update/_updateStats: the SR's allocation and the space used.
	s.db.update(sr, "virtual_allocation", sr.int("virtual_allocation")+disk.virtual,
		"physical_utilisation", sr.int("physical_utilisation")+disk.physical)
	s.refreshVDIOperations(vdi)
	return vdi, nil
}

// cloneVDI is VDI.clone (or, with an SR, VDI.copy into it): a new disk
// whose name, description, type, sharable, other_config, xenstore_data,
// on_boot, allow_caching and tags come from the original (xapi_vdi.ml
// snapshot_and_clone), the rest from SM as for a new disk. A clone needs
// the space SM's clone takes (smCloneSpace); a copy what a new disk takes.
func (s *Server) cloneVDI(vdi, sr *object) (*object, error) {
	if sr == nil {
		sr, _ = s.db.get("SR", vdi.str("SR"))
		if err := smCloneSpace(sr, vdi); err != nil {
			return nil, err
		}
	}
	clone, err := s.createVDI(sr, vdiSpec{
		nameLabel: vdi.str("name_label"), nameDescription: vdi.str("name_description"),
		size: vdi.int("virtual_size"), vdiType: vdi.str("type"), sharable: vdi.bool("sharable"),
		otherConfig: copyValue(vdi.fields["other_config"]).(map[string]any),
	})
	if err != nil {
		return nil, err
	}
	// The clone reads as the original does.
	clone.sim.data = bytes.Clone(vdi.sim.data)
	s.db.update(clone, "xenstore_data", copyValue(vdi.fields["xenstore_data"]), "on_boot", vdi.str("on_boot"),
		"allow_caching", vdi.bool("allow_caching"), "tags", copyValue(vdi.fields["tags"]))
	return clone, nil
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
// (xapi_globs.ml pre_ely_vdi_operations without blocked and force_unlock),
// each with the SM capability it needs (xapi_vdi.ml feature_of_op).
var vdiOperations = []struct{ op, capability string }{
	{"clone", "VDI_CLONE"}, {"copy", ""}, {"resize", "VDI_RESIZE"}, {"resize_online", "VDI_RESIZE_ONLINE"},
	{"snapshot", "VDI_SNAPSHOT"}, {"destroy", "VDI_DELETE"}, {"forget", ""}, {"update", "VDI_UPDATE"},
	{"generate_config", "VDI_GENERATE_CONFIG"},
}

// liveVDIOperations may run while a VBD has the disk attached (xapi_vdi.ml
// operation_can_be_performed_live, among the operations served).
var liveVDIOperations = map[string]bool{"snapshot": true, "resize_online": true, "clone": true}

// vdiOperationError is xapi_vdi.ml check_operation_error for the
// simulator's disks, the first failing check winning: resize needs a plugged
// PBD (SR_HAS_NO_PBDS); an operation that cannot run live is VDI_IN_USE
// [vdi; op] while a VBD has the disk attached (copy only while attached
// read-write); the SM driver must have the capability
// (SR_OPERATION_NOT_SUPPORTED [sr]); a sharable disk does not snapshot
// (VDI_IS_SHARABLE).
func (s *Server) vdiOperationError(vdi *object, op string) *Failure {
	sr, ok := s.db.get("SR", vdi.str("SR"))
	if !ok {
		return handleInvalid("SR", vdi.str("SR"))
	}
	if op == "resize" && !s.srPlugged(sr) {
		return newFailure(errSRHasNoPBDs, sr.ref)
	}
	active, activeRW := false, false
	for _, ref := range vdi.set("VBDs") {
		if vbd, ok := s.db.get("VBD", ref.(string)); ok && vbd.bool("currently_attached") {
			active = true
			activeRW = activeRW || vbd.str("mode") == "RW"
		}
	}
	if (op == "copy" && activeRW) || (op != "copy" && !liveVDIOperations[op] && active) {
		return newFailure(errVDIInUse, vdi.ref, op)
	}
	for _, o := range vdiOperations {
		if o.op == op && o.capability != "" && !smHas(sr.str("type"), o.capability) {
			return newFailure(errSROperationNotSupported, sr.ref)
		}
	}
	if op == "snapshot" && vdi.bool("sharable") {
		return newFailure(errVDIIsSharable, vdi.ref)
	}
	return nil
}

// srPlugged tells whether any of an SR's PBDs is plugged.
func (s *Server) srPlugged(sr *object) bool {
	for _, ref := range sr.set("PBDs") {
		if pbd, ok := s.db.get("PBD", ref.(string)); ok && pbd.bool("currently_attached") {
			return true
		}
	}
	return false
}

// refreshVDIOperations recomputes VDI.allowed_operations from
// vdiOperationError (xapi_vdi.ml update_allowed_operations).
func (s *Server) refreshVDIOperations(vdi *object) {
	allowed := []any{}
	for _, o := range vdiOperations {
		if s.vdiOperationError(vdi, o.op) == nil {
			allowed = append(allowed, o.op)
		}
	}
	setIfChanged(s.db, vdi, "allowed_operations", allowed)
}

// vdiCreate is VDI.create (message_forwarding.ml marks the SR for
// vdi_create: the SR must exist and its SM driver create disks; xapi_vdi.ml
// create refuses cbt_metadata disks; then the SM driver creates it).
func vdiCreate(c *callCtx) (any, error) {
	rec := c.args[0].(map[string]any)
	sr, err := c.s.db.mustGet("SR", rec["SR"].(string))
	if err != nil {
		return nil, err
	}
	if f := srOperationError(sr, "vdi_create"); f != nil {
		return nil, f
	}
	if rec["type"] == "cbt_metadata" {
		return nil, newFailure(errVDIIncompatibleType, "", "cbt_metadata")
	}
	vdi, err := c.s.createVDI(sr, vdiSpec{
		nameLabel: rec["name_label"].(string), nameDescription: rec["name_description"].(string),
		size: rec["virtual_size"].(int64), vdiType: rec["type"].(string), sharable: rec["sharable"].(bool),
		readOnly: rec["read_only"].(bool), otherConfig: rec["other_config"].(map[string]any),
		smConfig: rec["sm_config"].(map[string]any),
	})
	if err != nil {
		return nil, err
	}
	c.s.db.update(vdi, "tags", rec["tags"], "xenstore_data", rec["xenstore_data"])
	return vdi.ref, nil
}

// vdiDestroy is VDI.destroy: the SR must delete disks (vdi_destroy) and
// the disk allow destroy (VDI_IN_USE [vdi; "destroy"] while a VBD has it
// attached); then its VBDs go with it (xapi_vdi.ml).
func vdiDestroy(c *callCtx) (any, error) {
	vdi, err := c.s.db.mustGet("VDI", c.str(0))
	if err != nil {
		return nil, err
	}
	if sr, ok := c.s.db.get("SR", vdi.str("SR")); ok {
		if f := srOperationError(sr, "vdi_destroy"); f != nil {
			return nil, f
		}
	}
	if f := c.s.vdiOperationError(vdi, "destroy"); f != nil {
		return nil, f
	}
	c.s.destroyVDI(vdi)
	return nil, nil
}

// vdiResize is VDI.resize (message_forwarding.ml marks the SR for
// vdi_resize, then the VDI for resize: VDI_IN_USE while attached); then the
// SM driver resizes the disk and xapi records the size it reports.
func vdiResize(c *callCtx) (any, error) {
	s := c.s
	vdi, err := s.db.mustGet("VDI", c.str(0))
	if err != nil {
		return nil, err
	}
	sr, err := s.db.mustGet("SR", vdi.str("SR"))
	if err != nil {
		return nil, err
	}
	if f := srOperationError(sr, "vdi_resize"); f != nil {
		return nil, f
	}
	if f := s.vdiOperationError(vdi, "resize"); f != nil {
		return nil, f
	}
	virtual, physical, err := smResize(sr, vdi, c.int(1))
	if err != nil {
		return nil, err
	}
	s.db.update(sr, "virtual_allocation", sr.int("virtual_allocation")+virtual-vdi.int("virtual_size"),
		"physical_utilisation", sr.int("physical_utilisation")+physical-vdi.int("physical_utilisation"))
	s.db.update(vdi, "virtual_size", virtual, "physical_utilisation", physical)
	return nil, nil
}

// suspendImageSize is the suspend image xapi makes for a VM
// (xapi_xenops.ml suspend): 1.2 × 1.05 × memory_static_max plus 100 MiB.
func suspendImageSize(vm *object) int64 {
	return int64(float64(vm.int("memory_static_max"))*1.2*1.05) + 104857600
}

// now is the time xapi records, to the second as its database keeps it.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }
