package xapisim

import (
	"encoding/xml"
	"fmt"
	"sort"
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
var needsGuestAgent = map[string]bool{"clean_shutdown": true, "clean_reboot": true, "suspend": true}

// listedOps are the operations reported in VM.allowed_operations.
var listedOps = []string{
	"clone", "copy", "provision", "start", "start_on", "pause", "unpause", "clean_shutdown",
	"clean_reboot", "hard_shutdown", "hard_reboot", "suspend", "resume", "resume_on", "shutdown",
	"destroy", "changing_memory_limits", "changing_static_range", "changing_dynamic_range",
	"changing_VCPUs", "make_into_template", "power_state_reset",
}

// checkVMOperation is xapi's check_operation_error: the first failing check wins.
func (s *Server) checkVMOperation(vm *object, op string) error {
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
	// 7. Control domains and guest features.
	if vm.bool("is_control_domain") {
		if (op == "changing_VCPUs" || op == "destroy") && vm.int("domid") == 0 {
			return newFailure(errOperationNotAllowed, "This operation is not allowed on dom0")
		}
		if !controlDomainOps[op] {
			return newFailure(errOperationNotAllowed, "This operation is not allowed on a control domain")
		}
	}
	if needsGuestAgent[op] && ps == "Running" && !s.bootedPV(vm) && !s.guestAgentUp(vm) {
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
}

// opSpec is one VM operation: checks that need the current state, then the
// effect, applied once the operation's duration has passed.
type opSpec struct {
	prepare func() error
	apply   func() (any, error)
}

// vmOperation runs op on vm as xapi does: checks, then the operation shows in
// current_operations for its duration, so that conflicting calls fail with
// OTHER_OPERATION_IN_PROGRESS, then its effect. Called with s.mu held; the
// lock is released while the operation takes its time.
func (c *callCtx) vmOperation(vm *object, op string, spec opSpec) (any, error) {
	s := c.s
	if err := s.checkVMOperation(vm, op); err != nil {
		return nil, err
	}
	if spec.prepare != nil {
		if err := spec.prepare(); err != nil {
			return nil, err
		}
	}
	task := c.operationTask()
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

	s.operationStarted()
	cancelled := s.waitOperation(task, s.opDuration(op))
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

// waitOperation releases the lock for d, or until the task is cancelled or
// the server stops; it tells whether the operation was cancelled.
func (s *Server) waitOperation(task *object, d time.Duration) bool {
	if d <= 0 {
		return false
	}
	cancel := task.sim.cancel
	s.unlock()
	t := time.NewTimer(d)
	cancelled := false
	select {
	case <-t.C:
	case <-cancel:
		cancelled = true
	case <-s.closed:
		cancelled = true
	}
	t.Stop()
	s.mu.Lock()
	return cancelled
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
	return c.vmOperation(vm, "clone", opSpec{apply: func() (any, error) {
		return c.s.copyVM(vm, name, nil).ref, nil
	}})
}

func vmCopy(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	name := c.str(1)
	sr, _ := c.s.db.get("SR", c.str(2)) // an invalid SR ref means "the same SRs"
	return c.vmOperation(vm, "copy", opSpec{apply: func() (any, error) {
		return c.s.copyVM(vm, name, sr).ref, nil
	}})
}

// copyVM is xapi_vm_clone.copy_vm_record with the disks: a clone of a
// template is a template.
func (s *Server) copyVM(src *object, name string, sr *object) *object {
	fields := map[string]any{}
	for k, v := range src.fields {
		fields[k] = copyValue(v)
	}
	for _, k := range []string{"uuid", "metrics", "guest_metrics", "VBDs", "VIFs", "consoles", "current_operations",
		"allowed_operations", "snapshots", "children", "VUSBs", "VTPMs", "VGPUs", "attached_PCIs", "crash_dumps"} {
		delete(fields, k)
	}
	fields["name_label"] = name
	fields["is_a_template"] = src.bool("is_a_snapshot") || src.bool("is_a_template")
	fields["is_default_template"] = false
	fields["is_a_snapshot"] = false
	fields["snapshot_of"] = nullRef
	fields["snapshot_time"] = epoch
	fields["parent"] = nullRef
	fields["resident_on"] = nullRef
	fields["scheduled_to_be_resident_on"] = nullRef
	fields["ha_always_run"] = false
	fields["domid"] = int64(-1)
	fields["blocked_operations"] = map[string]any{}
	if src.str("power_state") != "Suspended" {
		fields["power_state"] = "Halted"
	}
	oc := fields["other_config"].(map[string]any)
	delete(oc, "default_template")
	delete(oc, "xensource_internal")
	oc["mac_seed"] = newUUID()
	if src.bool("is_a_template") {
		oc["base_template_name"] = src.str("name_label")
	}
	vm := s.newVM(fields)
	vm.sim.noPVDrivers = src.sim.noPVDrivers

	for _, vbdRef := range src.set("VBDs") {
		vbd, ok := s.db.get("VBD", vbdRef.(string))
		if !ok {
			continue
		}
		vdiRef := vbd.str("VDI")
		if vdi, ok := s.db.get("VDI", vdiRef); ok {
			target := sr
			if target == nil {
				target, _ = s.db.get("SR", vdi.str("SR"))
			}
			vdiRef = s.cloneVDI(vdi, target).ref
		}
		vbdFields := map[string]any{}
		for k, v := range vbd.fields {
			vbdFields[k] = copyValue(v)
		}
		delete(vbdFields, "uuid")
		vbdFields["VM"], vbdFields["VDI"], vbdFields["currently_attached"] = vm.ref, vdiRef, false
		if vbd.str("type") == "Disk" {
			vbdFields["other_config"] = map[string]any{"owner": ""}
		}
		s.newVBD(vbdFields)
	}
	for _, vifRef := range src.set("VIFs") {
		vif, ok := s.db.get("VIF", vifRef.(string))
		if !ok {
			continue
		}
		if network, ok := s.db.get("network", vif.str("network")); ok {
			s.newVIF(vm, network, vif.str("device"))
		}
	}
	if vdi, ok := s.db.get("VDI", src.str("suspend_VDI")); ok {
		s.db.update(vm, "suspend_VDI", s.cloneVDI(vdi, nil).ref)
	}
	return vm
}

// cloneVDI copies a VDI into sr (its own SR when sr is nil).
func (s *Server) cloneVDI(vdi, sr *object) *object {
	fields := map[string]any{}
	for k, v := range vdi.fields {
		fields[k] = copyValue(v)
	}
	delete(fields, "uuid")
	fields["VBDs"] = []any{}
	fields["current_operations"] = map[string]any{}
	if sr == nil {
		sr, _ = s.db.get("SR", vdi.str("SR"))
	}
	return s.newVDI(sr, fields)
}

// newVDI creates a VDI in sr and accounts for its size.
func (s *Server) newVDI(sr *object, fields map[string]any) *object {
	fields["SR"] = sr.ref
	if _, ok := fields["allowed_operations"]; !ok {
		fields["allowed_operations"] = []any{"clone", "copy", "resize", "destroy", "snapshot"}
	}
	vdi := s.db.create("VDI", fields)
	s.db.refSetAdd(sr, "VDIs", vdi.ref)
	s.db.update(sr, "virtual_allocation", sr.int("virtual_allocation")+vdi.int("virtual_size"),
		"physical_utilisation", sr.int("physical_utilisation")+vdi.int("virtual_size"))
	return vdi
}

func (s *Server) destroyVDI(vdi *object) {
	for _, vbdRef := range vdi.set("VBDs") {
		if vbd, ok := s.db.get("VBD", vbdRef.(string)); ok {
			if vm, ok := s.db.get("VM", vbd.str("VM")); ok {
				s.db.refSetRemove(vm, "VBDs", vbd.ref)
			}
			s.db.destroy(vbd)
		}
	}
	for _, vm := range s.db.objects["VM"] {
		if vm.str("suspend_VDI") == vdi.ref {
			s.db.update(vm, "suspend_VDI", nullRef)
		}
	}
	if sr, ok := s.db.get("SR", vdi.str("SR")); ok {
		s.db.refSetRemove(sr, "VDIs", vdi.ref)
		s.db.update(sr, "virtual_allocation", sr.int("virtual_allocation")-vdi.int("virtual_size"),
			"physical_utilisation", sr.int("physical_utilisation")-vdi.int("virtual_size"))
	}
	s.db.destroy(vdi)
}

// newVBD creates a VBD and links it to its VM and VDI.
func (s *Server) newVBD(fields map[string]any) {
	if _, ok := fields["allowed_operations"]; !ok {
		fields["allowed_operations"] = []any{"attach"}
	}
	vbd := s.db.create("VBD", fields)
	if vm, ok := s.db.get("VM", vbd.str("VM")); ok {
		s.db.refSetAdd(vm, "VBDs", vbd.ref)
	}
	if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok {
		s.db.refSetAdd(vdi, "VBDs", vbd.ref)
	}
}

// provisionXML is other_config:disks (xapi_templates.ml).
type provisionXML struct {
	Disks []struct {
		Device   string `xml:"device,attr"`
		Size     string `xml:"size,attr"`
		SR       string `xml:"sr,attr"`
		Bootable string `xml:"bootable,attr"`
		Type     string `xml:"type,attr"`
	} `xml:"disk"`
}

func vmProvision(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	s := c.s
	return c.vmOperation(vm, "provision", opSpec{apply: func() (any, error) {
		// xapi un-templates first, then creates the disks: a failure below
		// leaves a plain VM without disks.
		s.db.update(vm, "is_a_template", false)
		oc := vm.strMap("other_config")
		disksXML, _ := oc["disks"].(string)
		if disksXML == "" {
			return nil, nil
		}
		var p provisionXML
		if err := xml.Unmarshal([]byte(disksXML), &p); err != nil {
			return nil, newFailure(errInternalError, "Failed to parse provision XML: "+err.Error())
		}
		for _, d := range p.Disks {
			sr, ok := s.db.byUUID[d.SR]
			if !ok || sr.class.name != "SR" {
				return nil, newFailure(errUUIDInvalid, "sr", d.SR)
			}
			size, _ := strconv.ParseInt(d.Size, 10, 64)
			vdiType := d.Type
			if vdiType == "" {
				vdiType = "system"
			}
			vdi := s.newVDI(sr, map[string]any{
				"name_label": d.Device, "name_description": "Created by template provisioner",
				"virtual_size": size, "physical_utilisation": size, "type": vdiType,
				"sharable": false, "read_only": false,
				"sm_config": map[string]any{"vmhint": vm.str("uuid")},
			})
			s.newVBD(map[string]any{
				"VM": vm.ref, "VDI": vdi.ref, "userdevice": d.Device, "bootable": d.Bootable == "true",
				"mode": "RW", "type": "Disk", "unpluggable": vdiType != "system",
				"other_config": map[string]any{"owner": ""},
			})
		}
		delete(oc, "disks")
		delete(oc, "postinstall")
		s.db.touch(vm)
		return nil, nil
	}})
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

// chooseHost picks where vm starts: the given host, else its affinity host
// when it has room, else the enabled host with the most free memory.
func (s *Server) chooseHost(vm *object, given *object) (*object, error) {
	need := memoryNeeded(vm)
	if given != nil {
		if !given.bool("enabled") {
			return nil, newFailure(errHostDisabled, given.ref)
		}
		if free := s.freeMemory(given); free < need {
			return nil, newFailure(errHostNotEnoughFreeMemory, fmt.Sprint(need), fmt.Sprint(free))
		}
		return given, nil
	}
	if aff, ok := s.db.get("host", vm.str("affinity")); ok && aff.bool("enabled") && s.freeMemory(aff) >= need {
		return aff, nil
	}
	var best *object
	bestFree := int64(-1)
	anyEnabled := false
	for _, h := range s.hosts {
		if !h.obj.bool("enabled") {
			continue
		}
		anyEnabled = true
		if free := s.freeMemory(h.obj); free > bestFree {
			best, bestFree = h.obj, free
		}
	}
	if !anyEnabled {
		return nil, newFailure(errNoHostsAvailable)
	}
	if bestFree < need {
		return nil, newFailure(errHostNotEnoughFreeMemory, fmt.Sprint(need), fmt.Sprint(max(bestFree, 0)))
	}
	return best, nil
}

// setResident moves vm onto host (or off every host when host is nil),
// keeping host.resident_VMs and host_metrics.memory_free right.
func (s *Server) setResident(vm *object, host *object) {
	if old, ok := s.db.get("host", vm.str("resident_on")); ok {
		s.db.refSetRemove(old, "resident_VMs", vm.ref)
		old.sim.memoryFree += memoryNeeded(vm)
	}
	ref := nullRef
	if host != nil {
		ref = host.ref
		s.db.refSetAdd(host, "resident_VMs", vm.ref)
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
	if m, ok := s.db.get("VM_metrics", vm.str("metrics")); ok {
		s.db.update(m, "start_time", time.Now().UTC(), "state", []any{}, "VCPUs_number", vm.int("VCPUs_at_startup"),
			"memory_actual", vm.int("memory_static_max"), "hvm", vm.str("domain_type") == "hvm",
			"current_domain_type", vm.str("domain_type"))
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

func (s *Server) setDevicesAttached(vm *object, attached bool) {
	for _, class := range []string{"VBD", "VIF"} {
		for _, ref := range vm.set(class + "s") {
			if d, ok := s.db.get(class, ref.(string)); ok && d.bool("currently_attached") != attached {
				s.db.update(d, "currently_attached", attached)
			}
		}
	}
}

func (s *Server) dropGuestMetrics(vm *object) {
	if gm, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics")); ok {
		s.db.destroy(gm)
		s.db.update(vm, "guest_metrics", nullRef)
	}
}

// scheduleGuestAgent makes the guest agent of the current boot report after
// the boot delay, unless the VM has no PV drivers.
func (s *Server) scheduleGuestAgent(vm *object) {
	if vm.sim.noPVDrivers {
		return
	}
	if _, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics")); ok {
		return
	}
	gen := vm.sim.bootGen
	report := func() {
		if _, alive := s.db.get("VM", vm.ref); !alive || vm.sim.bootGen != gen || vm.str("power_state") != "Running" {
			return
		}
		s.reportGuestAgent(vm)
	}
	delay := s.cfg.BootDelay
	if delay <= 0 {
		report()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !s.sleep(delay) {
			return
		}
		s.mu.Lock()
		report()
		s.unlock()
	}()
}

// reportGuestAgent creates the VM_guest_metrics a booted guest's agent reports.
func (s *Server) reportGuestAgent(vm *object) {
	networks := map[string]any{}
	devices := []string{}
	for _, ref := range vm.set("VIFs") {
		if vif, ok := s.db.get("VIF", ref.(string)); ok {
			devices = append(devices, vif.str("device"))
		}
	}
	sort.Strings(devices)
	for _, d := range devices {
		s.nextIP++
		n := s.nextIP
		ip := fmt.Sprintf("10.%d.%d.%d", 10+(n>>16)&0xff, (n>>8)&0xff, n&0xff)
		networks[d+"/ip"] = ip
		networks[d+"/ipv4/0"] = ip
		networks[d+"/ipv6/0"] = fmt.Sprintf("fe80::%x:%x", n>>16, n&0xffff)
	}
	gm := s.db.create("VM_guest_metrics", map[string]any{
		"os_version": map[string]any{"name": vm.str("name_label"), "distro": "linux", "major": "6", "minor": "1"},
		"PV_drivers_version": map[string]any{
			"major": "9", "minor": "3", "micro": "1", "build": "1",
		},
		"PV_drivers_up_to_date": true,
		"PV_drivers_detected":   true,
		"networks":              networks,
		"other": map[string]any{
			"feature-shutdown": "1", "feature-suspend": "1", "feature-poweroff": "1",
			"feature-reboot": "1", "has-vendor-device": "0",
		},
		"last_updated":        time.Now().UTC(),
		"live":                true,
		"can_use_hotplug_vbd": "yes",
		"can_use_hotplug_vif": "yes",
	})
	s.db.update(vm, "guest_metrics", gm.ref)
	s.refreshAllowedOperations(vm)
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
		prepare: func() error {
			var err error
			if host, err = s.chooseHost(vm, given); err != nil {
				return err
			}
			s.db.update(vm, "scheduled_to_be_resident_on", host.ref)
			return nil
		},
		apply: func() (any, error) {
			if op == "start" || op == "start_on" {
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
	return c.vmOperation(vm, "pause", opSpec{apply: func() (any, error) {
		c.s.db.update(vm, "power_state", "Paused")
		return nil, nil
	}})
}

func vmUnpause(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	return c.vmOperation(vm, "unpause", opSpec{apply: func() (any, error) {
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
	return c.vmOperation(vm, "suspend", opSpec{apply: func() (any, error) {
		sr, ok := s.db.get("SR", s.pool.str("suspend_image_SR"))
		if !ok {
			sr = s.defaultSR()
		}
		vdi := s.newVDI(sr, map[string]any{
			"name_label": "Suspend image", "name_description": "Suspend image of " + vm.str("name_label"),
			"virtual_size": vm.int("memory_static_max"), "type": "suspend",
		})
		s.setResident(vm, nil)
		vm.sim.bootGen++
		s.db.update(vm, "power_state", "Suspended", "domid", int64(-1), "suspend_VDI", vdi.ref)
		s.setDevicesAttached(vm, false)
		return nil, nil
	}})
}

func vmShutdownAs(op string) func(*callCtx) (any, error) {
	return func(c *callCtx) (any, error) {
		vm, err := c.vm()
		if err != nil {
			return nil, err
		}
		return c.vmOperation(vm, op, opSpec{apply: func() (any, error) {
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
		return c.vmOperation(vm, op, opSpec{apply: func() (any, error) {
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
		// VBDs, VIFs and metrics go with the VM; VDIs stay (xapi_vm_helpers.destroy).
		for _, ref := range vm.set("VBDs") {
			if vbd, ok := s.db.get("VBD", ref.(string)); ok {
				if vdi, ok := s.db.get("VDI", vbd.str("VDI")); ok {
					s.db.refSetRemove(vdi, "VBDs", vbd.ref)
				}
				s.db.destroy(vbd)
			}
		}
		for _, ref := range vm.set("VIFs") {
			if vif, ok := s.db.get("VIF", ref.(string)); ok {
				if n, ok := s.db.get("network", vif.str("network")); ok {
					s.db.refSetRemove(n, "VIFs", vif.ref)
				}
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
	c.s.db.update(vm, "is_a_template", c.bool(1))
	c.s.refreshAllowedOperations(vm)
	return nil, nil
}
