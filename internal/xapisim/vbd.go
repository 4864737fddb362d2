package xapisim

import (
	"fmt"
	"slices"
	"strconv"
)

func init() {
	for name, fn := range map[string]func(*callCtx) (any, error){
		"create": vbdCreate, "destroy": vbdDestroy, "plug": vbdPlugAs("plug"), "unplug": vbdPlugAs("unplug"),
		"unplug_force": vbdPlugAs("unplug_force"),
	} {
		explicitHandlers["VBD."+name] = explicit{fn: fn, async: true, mutating: true}
	}
	// Declared with flags [`Session]: no Async form (datamodel_vm.ml).
	explicitHandlers["VM.get_allowed_VBD_devices"] = explicit{fn: vmGetAllowedVBDDevices}
}

// vbdCreate is VBD.create (xapi_vbd.ml create): the VM must exist; the
// caller's device and currently_attached count only for a suspended VM.
func vbdCreate(c *callCtx) (any, error) {
	rec := c.args[0].(map[string]any)
	vm, err := c.s.db.mustGet("VM", rec["VM"].(string))
	if err != nil {
		return nil, err
	}
	if vm.str("power_state") != "Suspended" {
		rec["device"], rec["currently_attached"] = "", false
	}
	vbd, err := c.s.createVBD(vm, rec)
	if err != nil {
		return nil, err
	}
	return vbd.ref, nil
}

// vbdDiskTypes are the VDI types a VBD may attach (xapi_vbd.ml create).
var vbdDiskTypes = []string{"system", "user", "ephemeral", "suspend", "crashdump", "metadata", "rrd", "pvs_cache"}

// createVBD is the rest of xapi_vbd.ml create, in its order: a disk must
// exist and be of a type a VBD attaches (VDI_INCOMPATIBLE_TYPE); a CD is
// read-only (VBD_CDS_MUST_BE_READONLY); only a CD may be empty
// (VBD_NOT_REMOVABLE_MEDIA ["in constructor"]); a read-only disk is not
// attached read-write (VDI_READONLY); a PV guest has no floppy; the
// userdevice must name a device (INVALID_DEVICE), "autodetect" taking the
// first free one, and no other VBD of the VM may name the same device
// (DEVICE_ALREADY_EXISTS). The SM's backend-kind follows into other_config.
func (s *Server) createVBD(vm *object, rec map[string]any) (*object, error) {
	vdiRef, _ := rec["VDI"].(string)
	empty, _ := rec["empty"].(bool)
	typ, mode := rec["type"].(string), rec["mode"].(string)
	vdi, vdiOK := s.db.get("VDI", vdiRef)
	if !empty && !vdiOK {
		return nil, handleInvalid("VDI", vdiRef)
	}
	if !empty && !slices.Contains(vbdDiskTypes, vdi.str("type")) {
		return nil, newFailure(errVDIIncompatibleType, vdiRef, vdi.str("type"))
	}
	switch {
	case typ == "CD" && mode != "RO":
		return nil, newFailure(errVBDCDsMustBeReadonly)
	case typ != "CD" && empty:
		return nil, newFailure(errVBDNotRemovableMedia, "in constructor")
	case mode == "RW" && vdi.bool("read_only"):
		return nil, newFailure(errVDIReadonly, vdiRef)
	}
	userdevice, err := s.resolveUserdevice(vm, rec["userdevice"].(string), typ)
	if err != nil {
		return nil, err
	}
	otherConfig := copyValue(rec["other_config"]).(map[string]any)
	if vdiOK {
		if kind, ok := vdi.strMap("sm_config")["backend-kind"]; ok {
			otherConfig["backend-kind"] = kind // Xapi_globs.vbd_backend_key
		}
	}
	fields := map[string]any{"userdevice": userdevice, "other_config": otherConfig}
	for _, k := range []string{"VM", "VDI", "device", "bootable", "mode", "type", "unpluggable", "empty",
		"currently_attached", "qos_algorithm_type", "qos_algorithm_params"} {
		if _, ok := fields[k]; !ok {
			fields[k] = copyValue(rec[k])
		}
	}
	return s.newVBD(fields), nil
}

// resolveUserdevice checks a VBD.create userdevice as xapi_vbd.ml create
// does and resolves "autodetect" into the first device allowed.
func (s *Server) resolveUserdevice(vm *object, userdevice, typ string) (string, error) {
	allowed, ok := s.allowedVBDDevices(vm, typ)
	if !ok {
		return "", newFailure(errNotImplemented, "VBD of type 'floppy' is not supported on PV domain")
	}
	if !validVBDDevice(userdevice, typ) {
		return "", newFailure(errInvalidDevice, userdevice)
	}
	if userdevice == "autodetect" {
		if len(allowed) == 0 {
			return "", newFailure(errInvalidDevice, userdevice)
		}
		if typ == "Floppy" {
			userdevice = allowed[0].linuxDevice()
		} else {
			userdevice = strconv.FormatInt(allowed[0].disk, 10)
		}
	}
	used := s.usedVBDDevices(vm)
	for _, d := range possibleDevices(userdevice) {
		if slices.Contains(used, d) {
			return "", newFailure(errDeviceAlreadyExists, userdevice)
		}
	}
	return userdevice, nil
}

// validVBDDevice is xapi_vbd_helpers.ml valid_device: "autodetect", a
// device name, or, but for a floppy, any integer (xapi's range test,
// n >= 0 || n < 16, holds for every integer).
func validVBDDevice(dev, typ string) bool {
	if dev == "autodetect" {
		return true
	}
	if _, ok := devOfString(false, dev); ok {
		return true
	}
	_, isInt := ocamlInt(dev)
	return typ != "Floppy" && isInt
}

// usedVBDDevices is xapi_vm_helpers.ml all_used_VBD_devices: what the
// device and userdevice of each of the VM's VBDs may name.
func (s *Server) usedVBDDevices(vm *object) []devNum {
	var used []devNum
	for _, ref := range vm.set("VBDs") {
		if vbd, ok := s.db.get("VBD", ref.(string)); ok {
			used = append(used, possibleDevices(vbd.str("device"))...)
			used = append(used, possibleDevices(vbd.str("userdevice"))...)
		}
	}
	return used
}

// allowedVBDDevices is xapi_vm_helpers.ml allowed_VBD_devices: disks 0 to
// 254 (IDE for an HVM guest's first four, 0 to 255 for a control domain),
// floppies 0 and 1 for an HVM guest only (false for a PV one), less the
// devices in use.
func (s *Server) allowedVBDDevices(vm *object, typ string) ([]devNum, bool) {
	hvm := vm.str("domain_type") == "hvm"
	var all []devNum
	switch {
	case typ == "Floppy" && !hvm:
		return nil, false
	case typ == "Floppy":
		for n := int64(0); n <= 1; n++ {
			d, _ := makeDevNum("floppy", n, 0)
			all = append(all, d)
		}
	default:
		last := int64(254)
		if vm.bool("is_control_domain") && !hvm {
			last = 255
		}
		for n := int64(0); n <= last; n++ {
			d, _ := devOfDiskNumber(hvm, n)
			all = append(all, d)
		}
	}
	used := s.usedVBDDevices(vm)
	return slices.DeleteFunc(all, func(d devNum) bool { return slices.Contains(used, d) }), true
}

// vmGetAllowedVBDDevices is VM.get_allowed_VBD_devices (xapi_vm.ml): the
// disk numbers of the disk devices allowed.
func vmGetAllowedVBDDevices(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	devs, _ := c.s.allowedVBDDevices(vm, "Disk")
	out := make([]any, len(devs))
	for i, d := range devs {
		out[i] = strconv.FormatInt(d.disk, 10)
	}
	return out, nil
}

// newVBD records a VBD as VBD.create (xapi_vbd.ml create) and VBD copy
// (xapi_vbd_helpers.ml copy) do: no device until the VM runs, not attached,
// status 0, no runtime properties; fields gives the caller's values.
func (s *Server) newVBD(fields map[string]any) *object {
	base := map[string]any{
		"current_operations": map[string]any{}, "allowed_operations": []any{}, "storage_lock": false,
		"device": "", "currently_attached": false, "status_code": int64(0), "status_detail": "",
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
	return vbd
}

// vbdOperations are the operations of VBD.allowed_operations
// (xapi_vbd_helpers.ml all_ops).
var vbdOperations = []string{"attach", "eject", "insert", "plug", "unplug", "unplug_force", "pause", "unpause"}

// vbdRule is one check of xapi_vbd_helpers.ml valid_operations: the error
// it sets on the operations it concerns (nil when it does not apply).
type vbdRule struct {
	ops []string
	err *Failure
}

// vbdOperationError is xapi_vbd_helpers.ml valid_operations for one
// operation, the first error set winning; sharing adds the checks xapi
// makes only when it asserts an operation (expensive_sharing_checks).
func (s *Server) vbdOperationError(vbd *object, op string, sharing bool) *Failure {
	vm, ok := s.db.get("VM", vbd.str("VM"))
	if !ok {
		return handleInvalid("VM", vbd.str("VM"))
	}
	ref, ps, empty := vbd.ref, vm.str("power_state"), vbd.bool("empty")
	plugOps := []string{"plug", "unplug", "unplug_force"}
	rules := []vbdRule{
		{[]string{"unplug", "unplug_force"}, failIf(!vbd.bool("unpluggable"), errVBDNotUnpluggable, ref)},
		{[]string{"insert", "eject"}, failIf(vbd.str("type") != "CD", errVBDNotRemovableMedia, ref)},
		{[]string{"eject"}, failIf(empty, errVBDIsEmpty, ref)},
		{[]string{"insert"}, failIf(!empty, errVBDNotEmpty, ref)},
	}
	rules = append(rules, powerStateRules(vm, vbd)...)
	rules = append(rules, vbdRule{[]string{"plug", "unplug"}, vmBusyError(vm)})
	if ps == "Running" && vm.str("domain_type") == "hvm" {
		rules = append(rules, vbdRule{plugOps, s.pvDriversError(vm, "VBD")},
			vbdRule{plugOps, failIf(vbd.str("type") == "CD", errOperationNotAllowed,
				"HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected")})
	}
	if vbd.str("type") == "CD" && ps == "Suspended" {
		rules = append(rules, vbdRule{[]string{"insert", "eject"},
			newFailure(errVMBadPowerState, vm.ref, "halted, running", "suspended")})
	}
	if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok && !empty {
		rules = append(rules, vbdRule{vbdOperations, failIf(!vdi.bool("managed"), errVDINotManaged, ref)})
		if sharing && !vbd.bool("currently_attached") {
			rules = append(rules, vbdRule{[]string{"attach", "insert", "plug"}, s.vdiSharingError(vm, vbd, vdi)})
		}
	}
	for _, r := range rules {
		if r.err != nil && slices.Contains(r.ops, op) {
			return r.err
		}
	}
	return nil
}

// failIf is the failure when cond holds, else nil.
func failIf(cond bool, code string, params ...string) *Failure {
	if !cond {
		return nil
	}
	return newFailure(code, params...)
}

// powerStateRules are the power-state checks of VBD and VIF operations: a
// running VM plugs what is detached and unplugs what is attached; otherwise
// nothing plugs (VM_BAD_POWER_STATE [vm; "running"; state]), and a VBD
// pauses only on a paused VM.
func powerStateRules(vm, dev *object) []vbdRule {
	ps := vm.str("power_state")
	attached := dev.bool("currently_attached")
	switch {
	case ps == "Running" && attached:
		return []vbdRule{{[]string{"plug"}, newFailure(errDeviceAlreadyAttached, dev.ref)}}
	case ps == "Running":
		return []vbdRule{{[]string{"unplug", "unplug_force"}, newFailure(errDeviceAlreadyDetached, dev.ref)}}
	}
	bad := []string{"plug", "unplug", "unplug_force"}
	if ps != "Paused" {
		bad = append(bad, "pause", "unpause")
	}
	return []vbdRule{{bad, newFailure(errVMBadPowerState, vm.ref, "running", lower(ps))}}
}

// vdiSharingError is the sharing check of xapi_vbd_helpers.ml
// valid_operations: another VBD of the disk in use (attached, on a VM that
// is not suspended nor a control domain) makes it VDI_IN_USE [vdi] if
// either wants to write and the disk is not sharable; writing a read-only
// disk is VDI_READONLY [vdi].
func (s *Server) vdiSharingError(vm, vbd, vdi *object) *Failure {
	var others []*object
	for _, ref := range vdi.set("VBDs") {
		other, ok := s.db.get("VBD", ref.(string))
		if !ok || other == vbd || !other.bool("currently_attached") {
			continue
		}
		if ovm, ok := s.db.get("VM", other.str("VM")); ok &&
			ovm.str("power_state") != "Suspended" && !ovm.bool("is_control_domain") {
			others = append(others, other)
		}
	}
	rw := slices.ContainsFunc(others, func(o *object) bool { return o.str("mode") == "RW" })
	write := vbd.str("mode") == "RW"
	if !vdi.bool("sharable") && !vm.bool("is_control_domain") && (rw || (write && len(others) > 0)) {
		return newFailure(errVDIInUse, vdi.ref)
	}
	if write && vdi.bool("read_only") {
		return newFailure(errVDIReadonly, vdi.ref)
	}
	return nil
}

// refreshVBDOperations recomputes VBD.allowed_operations
// (xapi_vbd_helpers.ml update_allowed_operations, without the sharing
// checks).
func (s *Server) refreshVBDOperations(vbd *object) {
	allowed := []any{}
	for _, op := range vbdOperations {
		if s.vbdOperationError(vbd, op, false) == nil {
			allowed = append(allowed, op)
		}
	}
	setIfChanged(s.db, vbd, "allowed_operations", allowed)
}

// vbdPlugAs serves VBD.plug, VBD.unplug and VBD.unplug_force: the checks of
// vbdOperationError (message_forwarding.ml marks the VBD), then xenopsd
// hot(un)plugs the device: plugged, the VBD has its device name
// (xapi_xenops.ml update_vbd) and the VM's host must reach the disk's SR.
func vbdPlugAs(op string) func(*callCtx) (any, error) {
	return func(c *callCtx) (any, error) {
		s := c.s
		vbd, err := s.db.mustGet("VBD", c.str(0))
		if err != nil {
			return nil, err
		}
		if f := s.vbdOperationError(vbd, op, true); f != nil {
			return nil, f
		}
		vm, _ := s.db.get("VM", vbd.str("VM"))
		if op == "plug" {
			host, _ := s.db.get("host", vm.str("resident_on"))
			if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok && host != nil && s.missingSRFor(vdi, host) {
				return nil, newFailure(errSRNotAttached, vdi.str("SR"))
			}
		}
		s.setVBDAttached(vm, vbd, op == "plug")
		return nil, nil
	}
}

// missingSRFor tells whether host has no plugged PBD to the disk's SR.
func (s *Server) missingSRFor(vdi, host *object) bool {
	for _, ref := range host.set("PBDs") {
		if pbd, ok := s.db.get("PBD", ref.(string)); ok && pbd.str("SR") == vdi.str("SR") && pbd.bool("currently_attached") {
			return false
		}
	}
	return true
}

// setVBDAttached plugs or unplugs a VBD as xenopsd reports it: plugged, its
// device is the Linux name of its userdevice.
func (s *Server) setVBDAttached(vm, vbd *object, attached bool) {
	s.db.update(vbd, "currently_attached", attached)
	if d, ok := devOfString(vm.str("domain_type") == "hvm", vbd.str("userdevice")); ok && attached {
		s.db.update(vbd, "device", d.linuxDevice())
	}
	s.refreshVBDOperations(vbd)
	if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok {
		s.refreshVDIOperations(vdi)
	}
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
