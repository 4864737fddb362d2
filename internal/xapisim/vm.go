package xapisim

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// vmAllowedStates are the power states each operation may start from, in the
// order xapi lists them in VM_BAD_POWER_STATE (xapi_vm_lifecycle.ml).
var vmAllowedStates = map[string][]string{
	"start":                  {"Halted"},
	"start_on":               {"Halted"},
	"provision":              {"Halted"},
	"pause":                  {"Running"},
	"unpause":                {"Paused"},
	"suspend":                {"Running"},
	"resume":                 {"Suspended"},
	"resume_on":              {"Suspended"},
	"clean_shutdown":         {"Running"},
	"clean_reboot":           {"Running"},
	"hard_shutdown":          {"Paused", "Suspended", "Running"},
	"shutdown":               {"Paused", "Suspended", "Running"},
	"hard_reboot":            {"Paused", "Running"},
	"clone":                  {"Halted"},
	"copy":                   {"Halted"},
	"destroy":                {"Halted", "Suspended"},
	"changing_memory_limits": {"Halted"},
	"changing_static_range":  {"Halted"},
	"changing_dynamic_range": {"Halted", "Running"},
	"changing_VCPUs":         {"Halted"},
	"make_into_template":     {"Halted"},
	"power_state_reset":      {"Halted", "Paused", "Suspended", "Running"},
	"snapshot":               {"Halted", "Paused", "Suspended", "Running"},
	"checkpoint":             {"Paused", "Suspended", "Running"},
	"revert":                 {"Halted", "Paused", "Suspended", "Running"},
	"reverting":              {"Halted", "Paused", "Suspended", "Running"},
	"pool_migrate":           {"Running"},
}

// templateOps may run on a template (check 4 of check_operation_error).
var templateOps = map[string]bool{
	"changing_dynamic_range": true, "changing_static_range": true, "changing_memory_limits": true,
	"changing_shadow_memory": true, "changing_VCPUs": true, "changing_NVRAM": true,
	"clone": true, "copy": true, "export": true, "metadata_export": true, "provision": true,
}

// snapshotOps may run on a snapshot (check 5).
var snapshotOps = map[string]bool{
	"revert": true, "clone": true, "copy": true, "export": true, "destroy": true,
	"hard_shutdown": true, "metadata_export": true,
}

// needsGuestAgent are the operations that need the guest's cooperation.
// (check_op_for_feature: a live HVM guest without PV drivers lacks
// feature-suspend for suspend, checkpoint and pool_migrate).
var needsGuestAgent = map[string]bool{
	"clean_shutdown": true, "clean_reboot": true, "suspend": true, "checkpoint": true, "pool_migrate": true,
}

// listedOps are the operations reported in VM.allowed_operations.
var listedOps = []string{
	"clone", "copy", "provision", "start", "start_on", "pause", "unpause", "clean_shutdown",
	"clean_reboot", "hard_shutdown", "hard_reboot", "suspend", "resume", "resume_on", "shutdown",
	"destroy", "changing_memory_limits", "changing_static_range", "changing_dynamic_range",
	"changing_VCPUs", "make_into_template", "power_state_reset", "snapshot", "checkpoint", "revert",
	"pool_migrate",
}

// checkVMOperation is xapi's check_operation_error, strict: the first
// failing check wins.
func (s *Server) checkVMOperation(vm *object, op string) error {
	return s.checkVMOperationAs(vm, op, true)
}

// checkVMOperationAs is check_operation_error; strict false (a forced
// pool_migrate) skips the mobility and guest feature checks.
func (s *Server) checkVMOperationAs(vm *object, op string, strict bool) error {
	// 1. Blocked operations.
	if reason, ok := vm.strMap("blocked_operations")[op]; ok {
		return newFailure(errOperationBlocked, vm.ref, fmt.Sprint(reason))
	}
	// 2. Power state.
	ps := vm.str("power_state")
	if allowed, ok := vmAllowedStates[op]; ok {
		okState := false
		for _, a := range allowed {
			if a == ps {
				okState = true
			}
		}
		if !okState && (op == "clone" || op == "copy") && ps == "Suspended" && vm.bool("is_a_snapshot") {
			okState = true
		}
		if !okState {
			return newFailure(errVMBadPowerState, vm.ref, strings.ToLower(strings.Join(allowed, ", ")), strings.ToLower(ps))
		}
	}
	// 3. Other operations in progress.
	if cur := vm.strMap("current_operations"); len(cur) > 0 && !allowedConcurrently(op, cur) {
		return otherOperationInProgress("VM", vm.ref, cur)
	}
	// 4. Templates.
	if vm.bool("is_a_template") && !vm.bool("is_a_snapshot") {
		allowed := templateOps[op] || (op == "destroy" && !vm.bool("is_default_template"))
		if !allowed {
			return newFailure(errVMIsTemplate, vm.ref, op)
		}
	}
	// 5. Snapshots.
	if vm.bool("is_a_snapshot") && !snapshotOps[op] {
		return newFailure(errVMIsSnapshot, vm.ref, op)
	}
	// 6. Provision only on templates.
	if op == "provision" && !vm.bool("is_a_template") {
		return newFailure(errProvisionOnlyOnTemplate)
	}
	if op == "revert" && !vm.bool("is_a_snapshot") {
		return newFailure(errOnlyRevertSnapshot)
	}
	// VMs xenopsd found immobile (platform nomigrate or nested-virt, as
	// VM_metrics records them at boot) do not suspend or migrate.
	if (op == "suspend" || op == "checkpoint" || op == "pool_migrate") && strict && s.immobile(vm) {
		return newFailure(errVMIsImmobile, vm.ref)
	}
	// 7. Control domains and guest features.
	if vm.bool("is_control_domain") {
		if (op == "changing_VCPUs" || op == "destroy") && vm.int("domid") == 0 {
			return newFailure(errOperationNotAllowed, "This operation is not allowed on dom0")
		}
		if !controlDomainOps[op] {
			return newFailure(errOperationNotAllowed, "This operation is not allowed on a control domain")
		}
	}
	if needsGuestAgent[op] && strict && ps == "Running" && !s.bootedPV(vm) && !s.guestAgentUp(vm) {
		return newFailure(errVMLacksFeature, vm.ref)
	}
	return nil
}

// controlDomainOps may run on a control domain.
var controlDomainOps = map[string]bool{
	"changing_dynamic_range": true, "changing_memory_limits": true, "changing_static_range": true,
	"start": true, "start_on": true, "changing_VCPUs": true, "destroy": true, "metadata_export": true,
}

// longCopies and snapshots are the operations xapi runs side by side
// (is_allowed_concurrently).
var (
	longCopies = map[string]bool{"clone": true, "copy": true, "export": true}
	snapshots  = map[string]bool{"snapshot": true, "checkpoint": true}
)

// allowedConcurrently is xapi's is_allowed_concurrently: copies run
// together, snapshots run together, a hard shutdown interrupts anything but
// another hard shutdown, a hard reboot anything but a hard shutdown or reboot.
func allowedConcurrently(op string, cur map[string]any) bool {
	all := func(set map[string]bool) bool {
		if !set[op] {
			return false
		}
		for _, o := range cur {
			if !set[fmt.Sprint(o)] {
				return false
			}
		}
		return true
	}
	if all(longCopies) || all(snapshots) {
		return true
	}
	running := func(ops ...string) bool {
		for _, o := range cur {
			for _, x := range ops {
				if o == x {
					return true
				}
			}
		}
		return false
	}
	switch op {
	case "hard_shutdown":
		return !running("hard_shutdown")
	case "hard_reboot":
		return !running("hard_shutdown", "hard_reboot")
	}
	return false
}

// immobile is xapi_vm_lifecycle.ml is_mobile negated: VM_metrics
// nomigrate or nested_virt, which xenopsd sets from the platform keys at
// boot (Vm_platform.is_true: "true" or "1", any case).
func (s *Server) immobile(vm *object) bool {
	m, ok := s.db.get("VM_metrics", vm.str("metrics"))
	return ok && (m.bool("nomigrate") || m.bool("nested_virt"))
}

// platformTrue is Vm_platform.is_true with default false.
func platformTrue(vm *object, key string) bool {
	v, _ := vm.strMap("platform")[key].(string)
	v = strings.ToLower(v)
	return v == "true" || v == "1"
}

// bootedPV tells whether the running domain is paravirtualised: PV guests
// offer clean shutdown and suspend without a guest agent.
func (s *Server) bootedPV(vm *object) bool {
	m, ok := s.db.get("VM_metrics", vm.str("metrics"))
	return ok && !m.bool("hvm")
}

// otherOperationInProgress renders OTHER_OPERATION_IN_PROGRESS as xapi does.
func otherOperationInProgress(class, ref string, cur map[string]any) error {
	tasks := sortedKeys(cur)
	ops := make([]string, len(tasks))
	for i, t := range tasks {
		ops[i] = fmt.Sprint(cur[t])
	}
	if len(tasks) == 1 {
		return newFailure(errOtherOperationInProgress, class, ref, ops[0], tasks[0])
	}
	return newFailure(errOtherOperationInProgress, class, ref,
		"{"+strings.Join(ops, ",")+"}", "{"+strings.Join(tasks, ",")+"}")
}

// guestAgentUp tells whether the VM's guest agent reports PV drivers.
func (s *Server) guestAgentUp(vm *object) bool {
	gm, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics"))
	return ok && gm.bool("PV_drivers_detected")
}

// refreshAllowedOperations recomputes VM.allowed_operations.
func (s *Server) refreshAllowedOperations(vm *object) {
	allowed := []any{}
	for _, op := range listedOps {
		if s.checkVMOperation(vm, op) == nil {
			allowed = append(allowed, op)
		}
	}
	vm.fields["allowed_operations"] = allowed
	s.db.touch(vm)
	for _, ref := range vm.set("VBDs") {
		if vbd, ok := s.db.get("VBD", ref.(string)); ok {
			s.refreshVBDOperations(vbd)
		}
	}
	for _, ref := range vm.set("VIFs") {
		if vif, ok := s.db.get("VIF", ref.(string)); ok {
			s.refreshVIFOperations(vif)
		}
	}
}

// opSpec is one VM operation: checks that need the current state, what
// happens as it starts, the progress it reports while it runs, then its
// effect, applied once the operation's duration has passed.
type opSpec struct {
	prepare func() error
	// start runs once the operation is registered on the VM.
	start func()
	// progress are the values task.progress takes, evenly spread over the
	// operation's duration.
	progress []float64
	// cancellable tells whether task.cancel ends the operation early: xapi
	// acts on a cancel only where an operation checks for it (xenopsd
	// between atoms, a clone between disks); elsewhere the call completes.
	cancellable bool
	// lenient runs the checks with strict false (a forced pool_migrate).
	lenient bool
	apply   func() (any, error)
}

// xenopsProgress is what a task run by xenopsd reports: its progress moves
// as the atoms of the operation complete (xenops_server.ml
// perform_atomics, mirrored by xapi_xenops.ml update_task). The simulator
// reports a few of those steps.
var xenopsProgress = []float64{0.25, 0.5, 0.75}

// vmOperation runs op on vm as xapi does: checks, then the operation shows in
// current_operations for its duration, so that conflicting calls fail with
// OTHER_OPERATION_IN_PROGRESS, then its effect. Called with s.mu held; the
// lock is released while the operation takes its time.
func (c *callCtx) vmOperation(vm *object, op string, spec opSpec) (any, error) {
	s := c.s
	if err := s.checkVMOperationAs(vm, op, !spec.lenient); err != nil {
		return nil, err
	}
	if spec.prepare != nil {
		if err := spec.prepare(); err != nil {
			return nil, err
		}
	}
	task := c.operationTask()
	// VM operations wait for their lock through Helpers.retry, which marks
	// the task cancellable.
	s.db.update(task, "allowed_operations", []any{"cancel"})
	if op == "hard_shutdown" || op == "hard_reboot" {
		// A hard shutdown or reboot interrupts what the VM was doing.
		for ref := range vm.strMap("current_operations") {
			if t, ok := s.db.get("task", ref); ok {
				s.cancelTask(t)
			}
		}
	}
	vm.strMap("current_operations")[task.ref] = op
	s.refreshAllowedOperations(vm)
	if spec.start != nil {
		spec.start()
	}

	s.operationStarted()
	cancelled := s.waitOperation(task, s.opDuration(op), spec.progress, spec.cancellable)
	s.stats.OperationsInFlight--

	if _, alive := s.db.get("VM", vm.ref); !alive {
		return nil, handleInvalid("VM", vm.ref)
	}
	delete(vm.strMap("current_operations"), task.ref)
	s.refreshAllowedOperations(vm)
	if cancelled {
		return nil, newFailure(errTaskCancelled, task.ref)
	}
	res, err := spec.apply()
	if _, alive := s.db.get("VM", vm.ref); alive {
		s.refreshAllowedOperations(vm)
	}
	return res, err
}

// operationStarted counts an operation in flight.
func (s *Server) operationStarted() {
	s.stats.OperationsInFlight++
	s.stats.OperationsPeak = max(s.stats.OperationsPeak, s.stats.OperationsInFlight)
}

// operationTask is the task an operation runs under: the Async task, or a
// transient one for a synchronous call (destroyed when the call returns, as
// xapi does).
func (c *callCtx) operationTask() *object {
	if c.task == nil {
		c.task = c.s.newTask(c.wire, c.session)
		c.transient = true
	}
	return c.task
}

// waitOperation releases the lock for d, setting the task's progress to
// each of progress in turn at even intervals, and tells whether the
// operation was cancelled: by task.cancel when it is cancellable, by a xapi
// restart or shutdown in any case.
func (s *Server) waitOperation(task *object, d time.Duration, progress []float64, cancellable bool) bool {
	if d <= 0 {
		return false
	}
	step := d / time.Duration(len(progress)+1)
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		wait := step
		if i == len(progress) {
			wait = time.Until(deadline)
		}
		if aborted := s.waitStep(task, wait, cancellable); aborted {
			return true
		}
		if i == len(progress) {
			return false
		}
		if _, alive := s.db.get("task", task.ref); alive && task.str("status") == "pending" {
			s.db.update(task, "progress", progress[i])
		}
	}
}

// waitStep releases the lock for d or until the task is cancelled (and the
// operation honours it) or aborted.
func (s *Server) waitStep(task *object, d time.Duration, cancellable bool) bool {
	cancel := task.sim.cancel
	s.unlock()
	defer s.mu.Lock()
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return false
		case <-cancel:
			s.mu.Lock()
			aborted := task.sim.aborted
			s.mu.Unlock()
			if cancellable || aborted {
				return true
			}
			cancel = nil // a cancel this operation does not check for
		case <-s.closed:
			return true
		}
	}
}

// vm is the VM the first argument names.
func (c *callCtx) vm() (*object, error) { return c.s.db.mustGet("VM", c.str(0)) }

func init() {
	for name, fn := range map[string]func(*callCtx) (any, error){
		"clone": vmClone, "copy": vmCopy, "provision": vmProvision,
		"start": vmBootHandler("start", false), "start_on": vmBootHandler("start", true),
		"resume": vmBootHandler("resume", false), "resume_on": vmBootHandler("resume", true),
		"pause": vmPause, "unpause": vmUnpause, "suspend": vmSuspend,
		"clean_shutdown": vmShutdownAs("clean_shutdown"), "hard_shutdown": vmShutdownAs("hard_shutdown"),
		"shutdown": vmShutdownAs("shutdown"), "clean_reboot": vmRebootAs("clean_reboot"),
		"hard_reboot": vmRebootAs("hard_reboot"), "destroy": vmDestroy, "power_state_reset": vmPowerStateReset,
		"set_memory_limits": vmSetMemoryLimits, "set_memory": vmSetMemory,
		"set_memory_static_range": vmSetMemoryStaticRange, "set_memory_dynamic_range": vmSetMemoryDynamicRange,
	} {
		explicitHandlers["VM."+name] = explicit{fn: fn, async: true, mutating: true}
	}
	explicitHandlers["VM.set_VCPUs_max"] = explicit{fn: vmSetVCPUsMax, mutating: true}
	explicitHandlers["VM.set_VCPUs_at_startup"] = explicit{fn: vmSetVCPUsAtStartup, mutating: true}
	explicitHandlers["VM.set_is_a_template"] = explicit{fn: vmSetIsATemplate, mutating: true}
}

func vmClone(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	name := c.str(1)
	return c.vmOperation(vm, "clone", c.s.copySpec(vm, nil, func() (any, error) {
		clone, err := c.s.copyVM(vm, name, nil)
		if err != nil {
			return nil, err
		}
		return clone.ref, nil
	}))
}

func vmCopy(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	name := c.str(1)
	sr, _ := c.s.db.get("SR", c.str(2)) // an invalid SR ref means "the same SRs"
	return c.vmOperation(vm, "copy", c.s.copySpec(vm, nil, func() (any, error) {
		clone, err := c.s.copyVM(vm, name, sr)
		if err != nil {
			return nil, err
		}
		return clone.ref, nil
	}))
}

// copySpec is how a clone or copy of vm runs: xapi clones the disks one by
// one, its progress following the share of the disks' total size done, and
// checks for a cancel before each (xapi_vm_clone.ml safe_clone_disks). A VM
// without disks reports no progress and ignores a cancel.
func (s *Server) copySpec(vm *object, ignore map[string]bool, apply func() (any, error)) opSpec {
	var sizes []int64
	var total int64
	for _, ref := range vm.set("VBDs") {
		vbd, ok := s.db.get("VBD", ref.(string))
		if !ok || vbd.bool("empty") || vbd.str("type") == "CD" || ignore[vbd.str("VDI")] {
			continue
		}
		if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok {
			sizes = append(sizes, vdi.int("virtual_size"))
			total += vdi.int("virtual_size")
		}
	}
	spec := opSpec{apply: apply, cancellable: len(sizes) > 0}
	var done int64
	for _, size := range sizes {
		done += size
		if total > 0 {
			spec.progress = append(spec.progress, float64(done)/float64(total))
		}
	}
	return spec
}

// createVM is VM.create (xapi_vm.ml create) with the fields a caller gives:
// a new VM_metrics with nothing measured yet, a mac_seed in other_config,
// Halted, no domain.
func (s *Server) createVM(fields map[string]any) *object {
	metrics := s.db.create("VM_metrics", map[string]any{
		"memory_actual": int64(0), "VCPUs_number": int64(0), "start_time": epoch, "install_time": epoch,
		"last_updated": epoch, "hvm": false, "nested_virt": false, "nomigrate": false,
		"current_domain_type": "unspecified",
	})
	base := map[string]any{
		"power_state": "Halted", "user_version": int64(1), "domid": int64(-1), "metrics": metrics.ref,
		"guest_metrics": nullRef, "allowed_operations": []any{}, "current_operations": map[string]any{},
		"blocked_operations": map[string]any{}, "is_default_template": false, "is_a_snapshot": false,
		"snapshot_time": epoch, "snapshot_of": nullRef, "parent": nullRef, "resident_on": nullRef,
		"scheduled_to_be_resident_on": nullRef, "affinity": nullRef, "memory_overhead": int64(0),
		"actions_after_shutdown": "destroy", "actions_after_reboot": "restart", "actions_after_crash": "restart",
		"HVM_shadow_multiplier": float64(1), "suspend_VDI": nullRef, "domarch": "", "is_control_domain": false,
		"generation_id": "", "hardware_platform_version": int64(0), "requires_reboot": false,
	}
	for k, v := range fields {
		base[k] = v
	}
	oc, _ := base["other_config"].(map[string]any)
	if oc == nil {
		oc = map[string]any{}
		base["other_config"] = oc
	}
	if _, ok := oc["mac_seed"]; !ok {
		oc["mac_seed"] = newUUID()
	}
	if dt, _ := base["domain_type"].(string); dt == "" || dt == "unspecified" {
		// derive_domain_type: HVM when there is a boot policy.
		base["domain_type"] = "pv"
		if hbp, _ := base["HVM_boot_policy"].(string); hbp != "" {
			base["domain_type"] = "hvm"
		}
	}
	vm := s.db.create("VM", base)
	s.refreshAllowedOperations(vm)
	return vm
}

// copyVMFields are the VM fields xapi_vm_clone.ml copy_vm_record copies from
// the source; every other field of the new VM is set by the clone.
var copyVMFields = []string{
	"name_description", "user_version", "affinity", "memory_overhead", "memory_target", "memory_static_max",
	"memory_dynamic_max", "memory_dynamic_min", "memory_static_min", "VCPUs_max", "VCPUs_at_startup",
	"VCPUs_params", "actions_after_softreboot", "actions_after_shutdown", "actions_after_reboot",
	"actions_after_crash", "HVM_boot_policy", "HVM_boot_params", "HVM_shadow_multiplier", "platform",
	"PV_kernel", "PV_ramdisk", "PV_args", "PV_bootloader", "PV_bootloader_args", "PV_legacy_args", "PCI_bus",
	"last_boot_CPU_flags", "is_control_domain", "last_booted_record", "recommendations", "xenstore_data",
	"ha_restart_priority", "tags", "bios_strings", "hardware_platform_version", "has_vendor_device",
	"reference_label", "domain_type", "NVRAM",
}

// diskOp is what xapi_vm_clone.ml clone does with the disks (disk_op_t).
type diskOp int

const (
	diskClone diskOp = iota
	diskCopy
	diskSnapshot
	diskCheckpoint
)

func (op diskOp) snapshot() bool { return op == diskSnapshot || op == diskCheckpoint }

// copyVM is VM.clone and VM.copy (xapi_vm_clone.ml clone and
// copy_vm_record): the disks (and a suspended VM's suspend image) are
// cloned first, copied into sr for a copy with a valid SR; if one fails, the
// disks made so far are destroyed and nothing else is made. Then the new VM
// is created with the copied fields, a new name, a fresh generation id,
// mac_seed and copied metrics; a clone of a template is a template. VBDs and
// VIFs follow, the VIFs with MACs derived from the new mac_seed.
func (s *Server) copyVM(src *object, name string, sr *object) (*object, error) {
	op := diskClone
	if sr != nil {
		op = diskCopy
	}
	return s.cloneVM(src, name, op, sr, nil, nil)
}

// cloneVM is xapi_vm_clone.ml clone for every disk_op: a snapshot or
// checkpoint snapshots the disks (VDI.snapshot) but those of ignore, keeps
// the source's other_config (mac_seed included) and VIF MACs, and makes
// the source's parent its own; the new VM is Halted but for a clone or copy
// of a suspended VM and a checkpoint of a running or suspended one, which
// are Suspended with a copy of the suspend image (a plain snapshot leaves
// the image out). info is the checkpoint's snapshot_info
// (Xapi_vm_snapshot.checkpoint), nil for the default.
func (s *Server) cloneVM(src *object, name string, op diskOp, sr *object, ignore map[string]bool,
	info map[string]any) (*object, error) {
	disks, suspendVDI, err := s.cloneDisks(src, sr, op, ignore)
	if err != nil {
		return nil, err
	}
	fields := s.copyVMRecord(src, name, op, info)
	vm := s.db.create("VM", fields)
	vm.sim.noPVDrivers = src.sim.noPVDrivers
	if op.snapshot() {
		vm.sim.metadata = vmMetadata(src)
		s.db.update(src, "parent", vm.ref)
	}
	halted := fields["power_state"] == "Halted"
	for _, d := range disks {
		vbdFields := map[string]any{}
		for _, k := range []string{"userdevice", "device", "bootable", "mode", "type", "unpluggable",
			"other_config", "qos_algorithm_type", "qos_algorithm_params"} {
			vbdFields[k] = copyValue(d.vbd.fields[k])
		}
		vbdFields["VM"], vbdFields["VDI"] = vm.ref, d.vdi
		vbdFields["empty"] = d.vbd.bool("empty") || d.vdi == nullRef
		// force_state_reset: a Halted copy has its devices detached.
		vbdFields["currently_attached"] = d.vbd.bool("currently_attached") && !halted
		if d.vbd.str("type") == "Disk" {
			if oc := vbdFields["other_config"].(map[string]any); oc["owner"] == nil {
				oc["owner"] = "" // the clone owns its disks (CA-58405)
			}
		}
		s.newVBD(vbdFields)
	}
	for _, ref := range src.set("VIFs") {
		vif, ok := s.db.get("VIF", ref.(string))
		if !ok {
			continue
		}
		// xapi_vif_helpers.ml copy: a VIF.create with the source's fields and,
		// but for a snapshot (preserve_mac_address), no MAC, so that it
		// derives from the new mac_seed.
		vifFields := map[string]any{"MAC": ""}
		if op.snapshot() {
			vifFields["MAC"] = vif.str("MAC")
		}
		for _, k := range []string{"device", "network", "currently_attached", "MTU", "other_config",
			"qos_algorithm_type", "qos_algorithm_params", "locking_mode", "ipv4_allowed", "ipv6_allowed",
			"ipv4_configuration_mode", "ipv4_addresses", "ipv4_gateway", "ipv6_configuration_mode",
			"ipv6_addresses", "ipv6_gateway"} {
			vifFields[k] = copyValue(vif.fields[k])
		}
		if halted {
			vifFields["currently_attached"] = false
		}
		_, _ = s.createVIF(vm, vifFields, false) // a VIF on a network that is gone is left out
	}
	s.db.update(vm, "suspend_VDI", suspendVDI)
	return vm, nil
}

// clonedDisk is a VBD of a VM being cloned and the disk its copy gets.
type clonedDisk struct {
	vbd *object
	vdi string
}

// cloneDisks clones (or snapshots) the disks of src's VBDs (CDs and empty
// drives are shared), leaving out for a snapshot the VBDs of the disks in
// ignore, then its suspend image but for a plain snapshot, as
// xapi_vm_clone.ml safe_clone_disks and clone do: on the first failure, the
// disks made so far are destroyed.
func (s *Server) cloneDisks(src, sr *object, op diskOp, ignore map[string]bool) ([]clonedDisk, string, error) {
	var disks []clonedDisk
	var made []*object
	clone := func(ref string) (string, error) {
		vdi, ok := s.db.get("VDI", ref)
		if !ok {
			return ref, nil
		}
		var c *object
		var err error
		if op.snapshot() {
			c, err = s.snapshotVDI(vdi)
		} else {
			c, err = s.cloneVDI(vdi, sr)
		}
		if err != nil {
			for _, m := range made {
				s.destroyVDI(m)
			}
			return "", err
		}
		made = append(made, c)
		return c.ref, nil
	}
	for _, ref := range src.set("VBDs") {
		vbd, ok := s.db.get("VBD", ref.(string))
		if !ok || (op.snapshot() && ignore[vbd.str("VDI")]) {
			continue
		}
		d := clonedDisk{vbd: vbd, vdi: vbd.str("VDI")}
		if !vbd.bool("empty") && vbd.str("type") != "CD" {
			var err error
			if d.vdi, err = clone(d.vdi); err != nil {
				return nil, "", err
			}
		}
		disks = append(disks, d)
	}
	if op == diskSnapshot {
		return disks, nullRef, nil
	}
	suspendVDI, err := clone(src.str("suspend_VDI"))
	if err != nil {
		return nil, "", err
	}
	return disks, suspendVDI, nil
}

// copyVMRecord is the record xapi_vm_clone.ml copy_vm_record makes for the
// copy of src named name, with copied metrics and guest metrics
// (Xapi_vm_helpers.copy_metrics, copy_guest_metrics).
func (s *Server) copyVMRecord(src *object, name string, op diskOp, info map[string]any) map[string]any {
	fields := map[string]any{}
	for _, k := range copyVMFields {
		fields[k] = copyValue(src.fields[k])
	}
	oc := copyValue(src.fields["other_config"]).(map[string]any)
	if !op.snapshot() {
		oc["mac_seed"] = newUUID()
	}
	delete(oc, "default_template")
	delete(oc, "xensource_internal")
	if _, ok := oc["base_template_name"]; src.bool("is_a_template") && !ok {
		oc["base_template_name"] = src.str("name_label")
	}
	ps := src.str("power_state")
	powerState := "Halted"
	if (op == diskCheckpoint && (ps == "Running" || ps == "Suspended")) ||
		(!op.snapshot() && ps == "Suspended") {
		powerState = "Suspended"
	}
	genID := ""
	if src.str("generation_id") != "" {
		genID = newGenerationID(s)
	}
	fields["metrics"] = s.copyRecord("VM_metrics", src.str("metrics"))
	fields["guest_metrics"] = s.copyRecord("VM_guest_metrics", src.str("guest_metrics"))
	snapshotOf, snapshotTime, parent, metadata := nullRef, epoch, nullRef, ""
	snapshotInfo := map[string]any{}
	if op.snapshot() {
		snapshotOf, snapshotTime, parent = src.ref, now(), src.str("parent")
		metadata = vmMetadataString(src)
		// snapshot_info: the power state at the snapshot, crash consistent.
		snapshotInfo = map[string]any{"power-state-at-snapshot": ps, "disk-snapshot-type": "crash_consistent"}
		if info != nil {
			snapshotInfo = info
		}
	}
	for k, v := range map[string]any{
		"name_label": name, "power_state": powerState, "other_config": oc,
		"is_a_template":       op.snapshot() || src.bool("is_a_snapshot") || src.bool("is_a_template"),
		"is_default_template": false, "is_a_snapshot": op.snapshot(), "snapshot_of": snapshotOf,
		"snapshot_time": snapshotTime, "snapshot_info": snapshotInfo, "snapshot_metadata": metadata,
		"transportable_snapshot_id": "", "parent": parent, "resident_on": nullRef,
		"scheduled_to_be_resident_on": nullRef, "suspend_VDI": nullRef, "domid": int64(-1), "domarch": "",
		"blobs": map[string]any{}, "ha_always_run": false, "protection_policy": nullRef,
		"is_vmss_snapshot": false, "snapshot_schedule": nullRef, "appliance": nullRef, "start_delay": int64(0),
		"shutdown_delay": int64(0), "order": int64(0), "suspend_SR": nullRef, "version": int64(0),
		"generation_id": genID, "requires_reboot": false, "blocked_operations": map[string]any{},
	} {
		fields[k] = v
	}
	return fields
}

// newGenerationID is Xapi_vm_helpers.fresh_genid's new generation id.
func newGenerationID(s *Server) string { return fmt.Sprintf("%d:%d", s.rng.Int63(), s.rng.Int63()) }

// copyRecord creates a copy of the object ref of class with a new uuid, or
// returns NULL when there is none.
func (s *Server) copyRecord(class, ref string) string {
	o, ok := s.db.get(class, ref)
	if !ok {
		return nullRef
	}
	fields := map[string]any{}
	for k, v := range o.fields {
		fields[k] = copyValue(v)
	}
	delete(fields, "uuid")
	return s.db.create(class, fields).ref
}

// provisionDisk is one disk of other_config:disks (xapi_templates.ml
// disk_of_xml).
type provisionDisk struct {
	device, sr, vdiType string
	size                int64
	bootable            bool
}

// errProvisionParse is what xapi reports when other_config:disks is not a
// <provision> of <disk/>s with their attributes: Parse_failure, caught by
// the catch-all of exnHelper.ml. (Malformed XML raises xml-light's Xml.Error
// instead, printed the same way; its exact text is not known.)
var errProvisionParse = newFailure(errInternalError, "Xapi_templates.Parse_failure")

// parseProvision parses other_config:disks as xapi_templates.ml
// disks_of_xml does: device, size, sr and bootable are required; a missing or
// unknown type is "system".
func parseProvision(text string) ([]provisionDisk, error) {
	d := xml.NewDecoder(strings.NewReader(text)) //nolint:gosec // encoding/xml resolves no external entities; text is other_config:disks
	var disks []provisionDisk
	depth := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, newFailure(errInternalError, "Xml.Error(_)")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 1 && t.Name.Local == "provision" && len(t.Attr) == 0:
			case depth == 2 && t.Name.Local == "disk":
				attrs := map[string]string{}
				for _, a := range t.Attr {
					attrs[a.Name.Local] = a.Value
				}
				disk := provisionDisk{device: attrs["device"], sr: attrs["sr"], vdiType: "system",
					bootable: attrs["bootable"] == "true"}
				for _, k := range []string{"device", "size", "sr", "bootable"} {
					if _, ok := attrs[k]; !ok {
						return nil, errProvisionParse
					}
				}
				size, err := strconv.ParseInt(attrs["size"], 0, 64)
				if err != nil {
					return nil, errProvisionParse
				}
				disk.size = size
				switch attrs["type"] {
				case "system", "user", "ephemeral", "suspend", "crashdump":
					disk.vdiType = attrs["type"]
				}
				disks = append(disks, disk)
			default:
				return nil, errProvisionParse
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 2 || (depth == 1 && strings.TrimSpace(string(t)) != "") {
				return nil, errProvisionParse
			}
		}
	}
	return disks, nil
}

// vmProvision is VM.provision (xapi_vm.ml provision): the VM stops being a
// template at once; if other_config has disks, the task's progress goes to
// 0.1 and each disk is created as xapi_templates.ml create_disk does (a
// VDI.create named "" in the SR the disk names, by uuid, then a VBD.create,
// then the VDI is named after the VBD's userdevice); then the disks and
// postinstall keys are removed. A failing disk leaves the disks made before
// it. xapi never checks for a cancel here.
func vmProvision(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	s := c.s
	var disks []provisionDisk
	var parseErr error
	return c.vmOperation(vm, "provision", opSpec{
		start: func() {
			s.setIsATemplate(vm, false)
			oc := vm.strMap("other_config")
			if text, ok := oc["disks"].(string); ok {
				disks, parseErr = parseProvision(text)
			}
			_, script := oc["postinstall"]
			if parseErr == nil && (len(disks) > 0 || script) {
				s.db.update(c.task, "progress", 0.1)
			}
		},
		apply: func() (any, error) {
			if parseErr != nil {
				return nil, parseErr
			}
			for _, d := range disks {
				if err := s.provisionDisk(vm, d); err != nil {
					return nil, err
				}
			}
			oc := vm.strMap("other_config")
			delete(oc, "disks")
			delete(oc, "postinstall")
			s.db.touch(vm)
			return nil, nil
		},
	})
}

// provisionDisk is xapi_templates.ml create_disk: the SR by uuid
// (UUID_INVALID ["sr"; uuid]), a VDI.create named "" in it, a VBD.create
// with its checks (a VBD that fails leaves the VDI made), then the VDI is
// named after the VBD's userdevice.
func (s *Server) provisionDisk(vm *object, d provisionDisk) error {
	sr, ok := s.db.byUUID[d.sr]
	if !ok || sr.class.name != "SR" {
		return newFailure(errUUIDInvalid, "sr", d.sr)
	}
	if f := srOperationError(sr, "vdi_create"); f != nil {
		return f
	}
	vdi, err := s.createVDI(sr, vdiSpec{
		nameDescription: "Created by template provisioner", size: d.size, vdiType: d.vdiType,
		smConfig: map[string]any{"vmhint": vm.str("uuid")},
	})
	if err != nil {
		return err
	}
	_, err = s.createVBD(vm, map[string]any{
		"VM": vm.ref, "VDI": vdi.ref, "device": "", "userdevice": d.device, "bootable": d.bootable,
		"mode": "RW", "type": "Disk", "unpluggable": d.vdiType != "system", "empty": false,
		"other_config": map[string]any{"owner": ""}, "currently_attached": false, "qos_algorithm_type": "",
		"qos_algorithm_params": map[string]any{},
	})
	if err != nil {
		return err
	}
	s.db.update(vdi, "name_label", d.device)
	return nil
}

// memoryNeeded is what starting vm reserves on a host.
func memoryNeeded(vm *object) int64 { return vm.int("memory_static_max") }

// freeMemory is a host's free memory less what starting VMs reserved.
func (s *Server) freeMemory(host *object) int64 {
	reserved := int64(0)
	for _, vm := range s.db.objects["VM"] {
		if vm.str("scheduled_to_be_resident_on") == host.ref {
			reserved += memoryNeeded(vm)
		}
	}
	return host.sim.memoryFree - reserved
}

// chooseHost picks where vm starts, as xapi_vm_helpers.ml does: a given
// host must be enabled (HOST_DISABLED), reach every SR the VM's disks are in
// through a plugged PBD (assert_can_see_SRs: VM_REQUIRES_SR [vm; sr]) and
// have the memory; otherwise the affinity host if it qualifies and has room,
// else the qualifying host with the most free memory (NO_HOSTS_AVAILABLE
// when none qualifies, HOST_NOT_ENOUGH_FREE_MEMORY when none has room).
func (s *Server) chooseHost(vm *object, given *object) (*object, error) {
	need := memoryNeeded(vm)
	if given != nil {
		if f := s.assertCanBootHere(vm, given); f != nil {
			return nil, f
		}
		return given, nil
	}
	if aff, ok := s.db.get("host", vm.str("affinity")); ok && aff.bool("enabled") && s.placementError(vm, aff) == nil &&
		s.freeMemory(aff) >= need {
		return aff, nil
	}
	var best *object
	bestFree := int64(-1)
	for _, h := range s.hosts {
		if !h.obj.bool("enabled") || s.placementError(vm, h.obj) != nil {
			continue
		}
		if free := s.freeMemory(h.obj); free > bestFree {
			best, bestFree = h.obj, free
		}
	}
	if best == nil {
		return nil, newFailure(errNoHostsAvailable)
	}
	if bestFree < need {
		return nil, newFailure(errHostNotEnoughFreeMemory, fmt.Sprint(need), fmt.Sprint(max(bestFree, 0)))
	}
	return best, nil
}

// placementError is what xapi_vm_helpers.ml assert_can_boot_here finds
// wrong with host for vm's devices: an SR of its disks the host does not
// reach (assert_can_see_SRs: VM_REQUIRES_SR [vm; sr]), then a network of its
// VIFs (assert_can_see_networks: one that is gone is HANDLE_INVALID, one
// the host has no PIF on VM_REQUIRES_NETWORK [vm; network]).
func (s *Server) placementError(vm, host *object) *Failure {
	if sr := s.missingSR(vm, host); sr != "" {
		return newFailure(errVMRequiresSR, vm.ref, sr)
	}
	for _, vif := range s.vifsOf(vm) {
		network, ok := s.db.get("network", vif.str("network"))
		if !ok {
			return handleInvalid("network", vif.str("network"))
		}
		if !s.networkOnHost(network, host) {
			return newFailure(errVMRequiresNet, vm.ref, network.ref)
		}
	}
	return nil
}

// missingSR is the first SR holding one of vm's disks (or, suspended, its
// suspend image) that host has no plugged PBD for, or "".
func (s *Server) missingSR(vm, host *object) string {
	var vdis []string
	for _, ref := range vm.set("VBDs") {
		if vbd, ok := s.db.get("VBD", ref.(string)); ok && !vbd.bool("empty") {
			vdis = append(vdis, vbd.str("VDI"))
		}
	}
	if vm.str("power_state") == "Suspended" {
		vdis = append(vdis, vm.str("suspend_VDI"))
	}
	for _, ref := range vdis {
		vdi, ok := s.db.get("VDI", ref)
		if !ok {
			continue
		}
		seen := false
		for _, pbdRef := range host.set("PBDs") {
			if pbd, ok := s.db.get("PBD", pbdRef.(string)); ok && pbd.str("SR") == vdi.str("SR") &&
				pbd.bool("currently_attached") {
				seen = true
			}
		}
		if !seen {
			return vdi.str("SR")
		}
	}
	return ""
}

// setResident moves vm onto host (or off every host when host is nil),
// keeping host.resident_VMs and host_metrics.memory_free right.
func (s *Server) setResident(vm *object, host *object) {
	if old, ok := s.db.get("host", vm.str("resident_on")); ok {
		old.sim.memoryFree += memoryNeeded(vm)
	}
	ref := nullRef
	if host != nil {
		ref = host.ref
		host.sim.memoryFree -= memoryNeeded(vm)
	}
	s.db.update(vm, "resident_on", ref, "scheduled_to_be_resident_on", nullRef)
}

// boot puts vm into Running (or Paused) on host with a new domain.
func (s *Server) boot(vm, host *object, paused bool) {
	s.setResident(vm, host)
	state := "Running"
	if paused {
		state = "Paused"
	}
	s.nextDomid++
	vm.sim.bootGen++
	s.db.update(vm, "power_state", state, "domid", s.nextDomid)
	s.setDevicesAttached(vm, true)
	if ci, ok := s.readConfigDrive(vm); ok {
		vm.sim.cloudInit = &ci
	}
	// xapi_network.ml with_networks_attached_for_vm: the VIFs' networks come
	// up on the host.
	for _, ref := range vm.set("VIFs") {
		if vif, ok := s.db.get("VIF", ref.(string)); ok {
			s.attachNetwork(vif.str("network"), host)
		}
	}
	if m, ok := s.db.get("VM_metrics", vm.str("metrics")); ok {
		s.db.update(m, "start_time", time.Now().UTC(), "state", []any{}, "VCPUs_number", vm.int("VCPUs_at_startup"),
			"memory_actual", vm.int("memory_static_max"), "hvm", vm.str("domain_type") == "hvm",
			"current_domain_type", vm.str("domain_type"), "nomigrate", platformTrue(vm, "nomigrate"),
			"nested_virt", platformTrue(vm, "nested-virt"))
	}
	if !paused {
		s.scheduleGuestAgent(vm)
	}
}

// halt powers vm off: no domain, no guest agent, devices detached.
func (s *Server) halt(vm *object) {
	s.setResident(vm, nil)
	vm.sim.bootGen++
	s.db.update(vm, "power_state", "Halted", "domid", int64(-1))
	s.setDevicesAttached(vm, false)
	s.dropGuestMetrics(vm)
	if vdi, ok := s.db.get("VDI", vm.str("suspend_VDI")); ok {
		s.destroyVDI(vdi)
	}
}

// setDevicesAttached plugs or unplugs the VM's VBDs and VIFs, as xenopsd
// reports them (xapi_xenops.ml update_vbd sets a plugged VBD's device, the
// Linux name of its userdevice) and recomputes what the disks allow. An
// empty CD drive is plugged into an HVM guest only (xenops_server_xen.ml:
// a PV guest's is simulated by unplugging the whole drive).
func (s *Server) setDevicesAttached(vm *object, attached bool) {
	hvm := vm.str("domain_type") == "hvm"
	for _, ref := range vm.set("VBDs") {
		vbd, ok := s.db.get("VBD", ref.(string))
		if ok && vbd.bool("currently_attached") != attached && (!vbd.bool("empty") || hvm || !attached) {
			s.setVBDAttached(vm, vbd, attached)
		}
	}
	for _, ref := range vm.set("VIFs") {
		if vif, ok := s.db.get("VIF", ref.(string)); ok && vif.bool("currently_attached") != attached {
			s.db.update(vif, "currently_attached", attached)
		}
	}
}

// base26 is Device_number.string_of_int26: 0 is "a", 25 "z", 26 "aa".
func base26(n int) string {
	low := string(rune('a' + n%26))
	if n/26 == 0 {
		return low
	}
	return base26(n/26-1) + low
}

// vmBootHandler serves VM.start/start_on and VM.resume/resume_on: op (or
// op_on with a host argument), then the start_paused flag.
func vmBootHandler(op string, on bool) func(*callCtx) (any, error) {
	return func(c *callCtx) (any, error) {
		vm, err := c.vm()
		if err != nil {
			return nil, err
		}
		var given *object
		pausedArg := 1
		if on {
			if given, err = c.s.db.mustGet("host", c.str(1)); err != nil {
				return nil, err
			}
			op, pausedArg = op+"_on", 2
		}
		return c.bootVM(vm, op, given, c.bool(pausedArg))
	}
}

// bootVM places vm on a host (the given one, its affinity, or the freest),
// reserving the memory while the operation runs, then boots it there. A
// resume destroys the suspend image and keeps the running guest agent.
func (c *callCtx) bootVM(vm *object, op string, given *object, paused bool) (any, error) {
	s := c.s
	var host *object
	return c.vmOperation(vm, op, opSpec{
		progress:    xenopsProgress,
		cancellable: true,
		prepare: func() error {
			// message_forwarding.ml marks every VBD for attach before it picks
			// a host: a disk another VM writes is VDI_IN_USE.
			for _, ref := range vm.set("VBDs") {
				if vbd, ok := s.db.get("VBD", ref.(string)); ok {
					if f := s.vbdOperationError(vbd, "attach", true); f != nil {
						return f
					}
				}
			}
			var err error
			if host, err = s.chooseHost(vm, given); err != nil {
				return err
			}
			s.db.update(vm, "scheduled_to_be_resident_on", host.ref)
			return nil
		},
		apply: func() (any, error) {
			if op == "start" || op == "start_on" {
				// Guest metrics a revert copied from a snapshot are the
				// old guest's: the new one's agent reports afresh.
				s.dropGuestMetrics(vm)
				s.boot(vm, host, paused)
				return nil, nil
			}
			if vdi, ok := s.db.get("VDI", vm.str("suspend_VDI")); ok {
				s.destroyVDI(vdi)
			}
			gen := vm.sim.bootGen
			s.boot(vm, host, paused)
			// The resumed guest's agent is the one that was running.
			vm.sim.bootGen = gen + 1
			return nil, nil
		},
	})
}

func vmPause(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	return c.vmOperation(vm, "pause", opSpec{progress: xenopsProgress, cancellable: true, apply: func() (any, error) {
		c.s.db.update(vm, "power_state", "Paused")
		return nil, nil
	}})
}

func vmUnpause(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	return c.vmOperation(vm, "unpause", opSpec{progress: xenopsProgress, cancellable: true, apply: func() (any, error) {
		c.s.db.update(vm, "power_state", "Running")
		c.s.scheduleGuestAgent(vm)
		return nil, nil
	}})
}

func vmSuspend(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	s := c.s
	return c.vmOperation(vm, "suspend", opSpec{progress: xenopsProgress, cancellable: true, apply: func() (any, error) {
		vdi, err := s.suspendImage(vm)
		if err != nil {
			return nil, err
		}
		s.setResident(vm, nil)
		vm.sim.bootGen++
		// The devices stay attached: only a halt detaches them
		// (xapi_vm_lifecycle.ml force_state_reset_keep_current_operations).
		s.db.update(vm, "power_state", "Suspended", "domid", int64(-1), "suspend_VDI", vdi.ref)
		return nil, nil
	}})
}

// suspendImage creates the VDI a suspend of vm writes its memory to, in
// the SR Helpers.choose_suspend_sr picks: the VM's suspend_SR, else the
// pool's, else the host's.
func (s *Server) suspendImage(vm *object) (*object, error) {
	sr, ok := s.db.get("SR", vm.str("suspend_SR"))
	if !ok {
		sr, ok = s.db.get("SR", s.pool.str("suspend_image_SR"))
	}
	if !ok {
		host, _ := s.db.get("host", vm.str("resident_on"))
		sr, _ = s.db.get("SR", host.str("suspend_image_sr"))
	}
	return s.createVDI(sr, vdiSpec{
		nameLabel: "Suspend image", nameDescription: "Suspend image", size: suspendImageSize(vm),
		vdiType: "suspend", smConfig: map[string]any{
			"vmhint": vm.str("uuid"), "initial_allocation": strconv.FormatInt(suspendImageSize(vm), 10),
		},
	})
}

func vmShutdownAs(op string) func(*callCtx) (any, error) {
	return func(c *callCtx) (any, error) {
		vm, err := c.vm()
		if err != nil {
			return nil, err
		}
		return c.vmOperation(vm, op, opSpec{progress: xenopsProgress, cancellable: true, apply: func() (any, error) {
			c.s.halt(vm)
			return nil, nil
		}})
	}
}

func vmRebootAs(op string) func(*callCtx) (any, error) {
	return func(c *callCtx) (any, error) {
		vm, err := c.vm()
		if err != nil {
			return nil, err
		}
		s := c.s
		return c.vmOperation(vm, op, opSpec{progress: xenopsProgress, cancellable: true, apply: func() (any, error) {
			host, _ := s.db.get("host", vm.str("resident_on"))
			s.dropGuestMetrics(vm)
			s.boot(vm, host, false)
			return nil, nil
		}})
	}
}

func vmDestroy(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	if vm.bool("is_default_template") {
		return nil, newFailure(errVMIsTemplate, vm.ref, "destroy")
	}
	s := c.s
	return c.vmOperation(vm, "destroy", opSpec{apply: func() (any, error) {
		// xapi_vm.ml destroy: the children are rebased onto the VM's parent.
		for _, ref := range vm.set("children") {
			if child, ok := s.db.get("VM", ref.(string)); ok {
				s.db.update(child, "parent", vm.str("parent"))
			}
		}
		// VBDs, VIFs and metrics go with the VM; VDIs stay (xapi_vm_helpers.destroy).
		for _, ref := range vm.set("VBDs") {
			if vbd, ok := s.db.get("VBD", ref.(string)); ok {
				s.db.destroy(vbd)
				if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok {
					s.refreshVDIOperations(vdi)
				}
			}
		}
		for _, ref := range vm.set("VIFs") {
			if vif, ok := s.db.get("VIF", ref.(string)); ok {
				s.db.destroy(vif)
			}
		}
		if m, ok := s.db.get("VM_metrics", vm.str("metrics")); ok {
			s.db.destroy(m)
		}
		s.dropGuestMetrics(vm)
		s.setResident(vm, nil)
		s.db.destroy(vm)
		return nil, nil
	}})
}

func vmPowerStateReset(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	if err := c.s.checkVMOperation(vm, "power_state_reset"); err != nil {
		return nil, err
	}
	c.s.halt(vm)
	c.s.refreshAllowedOperations(vm)
	return nil, nil
}

// setMemory checks xapi's memory constraints and applies them.
func (c *callCtx) setMemory(vm *object, op string, staticMin, staticMax, dynMin, dynMax int64) (any, error) {
	if err := c.s.checkVMOperation(vm, op); err != nil {
		return nil, err
	}
	if staticMin > dynMin || dynMin > dynMax || dynMax > staticMax {
		return nil, newFailure(errMemoryConstraintOrder)
	}
	c.s.db.update(vm, "memory_static_min", staticMin, "memory_static_max", staticMax,
		"memory_dynamic_min", dynMin, "memory_dynamic_max", dynMax)
	return nil, nil
}

func vmSetMemoryLimits(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	return c.setMemory(vm, "changing_memory_limits", c.int(1), c.int(2), c.int(3), c.int(4))
}

func vmSetMemory(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	v := c.int(1)
	return c.setMemory(vm, "changing_memory_limits", vm.int("memory_static_min"), v, v, v)
}

func vmSetMemoryStaticRange(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	return c.setMemory(vm, "changing_static_range", c.int(1), c.int(2),
		vm.int("memory_dynamic_min"), vm.int("memory_dynamic_max"))
}

func vmSetMemoryDynamicRange(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	return c.setMemory(vm, "changing_dynamic_range", vm.int("memory_static_min"), vm.int("memory_static_max"),
		c.int(1), c.int(2))
}

const vcpuConstraint = "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"

func vmSetVCPUsMax(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	if err := c.s.checkVMOperation(vm, "changing_VCPUs"); err != nil {
		return nil, err
	}
	v := c.int(1)
	if v < 1 || v < vm.int("VCPUs_at_startup") {
		return nil, newFailure(errInvalidValue, vcpuConstraint, fmt.Sprint(v))
	}
	c.s.db.update(vm, "VCPUs_max", v)
	return nil, nil
}

func vmSetVCPUsAtStartup(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	v := c.int(1)
	if v < 1 || v > vm.int("VCPUs_max") {
		return nil, newFailure(errInvalidValue, vcpuConstraint, fmt.Sprint(v))
	}
	c.s.db.update(vm, "VCPUs_at_startup", v)
	return nil, nil
}

func vmSetIsATemplate(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	if c.bool(1) {
		if err := c.s.checkVMOperation(vm, "make_into_template"); err != nil {
			return nil, err
		}
	}
	c.s.setIsATemplate(vm, c.bool(1))
	c.s.refreshAllowedOperations(vm)
	return nil, nil
}

// setIsATemplate is xapi_vm_helpers.ml set_is_a_template: making a VM a
// template clears ha_always_run; un-templating it is its install time.
func (s *Server) setIsATemplate(vm *object, value bool) {
	if value {
		s.db.update(vm, "ha_always_run", false)
	} else if m, ok := s.db.get("VM_metrics", vm.str("metrics")); ok {
		s.db.update(m, "install_time", now())
	}
	s.db.update(vm, "is_a_template", value)
}
