package xapisim

import (
	"fmt"
)

// VM placement checks, pool migration and HA priorities, as
// xapi_vm_helpers.ml, xapi_vm_migrate.ml, message_forwarding.ml and
// xapi_vm.ml do them.

func init() {
	explicitHandlers["VM.assert_can_boot_here"] = explicit{fn: vmAssertCanBootHere, async: true}
	explicitHandlers["VM.pool_migrate"] = explicit{fn: vmPoolMigrate, async: true, mutating: true}
	// Both are ~flags:[`Session] in datamodel_vm.ml: no Async form.
	explicitHandlers["VM.set_ha_restart_priority"] = explicit{fn: vmSetHARestartPriority, mutating: true}
	explicitHandlers["VM.set_ha_always_run"] = explicit{fn: vmSetHAAlwaysRun, mutating: true}
}

// assertCanBootHere is xapi_vm_helpers.ml assert_can_boot_here for the
// simulator's hosts, the first failing check winning: the host must be live
// (HOST_NOT_LIVE []), enabled unless the VM runs there already (a local
// live migration; HOST_DISABLED [host]), reach the VM's SRs and networks
// (placementError), have the memory, the VM's own counted free when it
// runs there (host_compute_free_memory_with_maximum_compression with the
// VM; HOST_NOT_ENOUGH_FREE_MEMORY [needed; available]) and as many CPUs as
// the VM has vCPUs unless platform:vcpu-unrestricted
// (HOST_NOT_ENOUGH_PCPUS [vcpus; pcpus]).
func (s *Server) assertCanBootHere(vm, host *object) *Failure {
	if m, ok := s.db.get("host_metrics", host.str("metrics")); !ok || !m.bool("live") {
		return newFailure(errHostNotLive)
	}
	local := vm.str("power_state") == "Running" && vm.str("resident_on") == host.ref
	if !vm.bool("is_control_domain") && !local && !host.bool("enabled") {
		return newFailure(errHostDisabled, host.ref)
	}
	if f := s.placementError(vm, host); f != nil {
		return f
	}
	need, free := memoryNeeded(vm), s.freeMemory(host)
	if vm.str("resident_on") == host.ref {
		free += need
	}
	if free < need {
		return newFailure(errHostNotEnoughFreeMemory, fmt.Sprint(need), fmt.Sprint(max(free, 0)))
	}
	if vcpus := vm.int("VCPUs_max"); vcpus > hostCPUs && !platformTrue(vm, "vcpu-unrestricted") {
		return newFailure(errHostNotEnoughPCPUs, fmt.Sprint(vcpus), fmt.Sprint(hostCPUs))
	}
	return nil
}

// vmAssertCanBootHere is VM.assert_can_boot_here(self, host).
func vmAssertCanBootHere(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	host, err := c.s.db.mustGet("host", c.str(1))
	if err != nil {
		return nil, err
	}
	if f := c.s.assertCanBootHere(vm, host); f != nil {
		return nil, f
	}
	return nil, nil
}

// vmPoolMigrate is VM.pool_migrate(vm, host, options) (message_forwarding.ml
// pool_migrate, xapi_vm_migrate.ml pool_migrate): options "force" ("true"
// or "false", as bool_of_string reads it; anything else is false) makes
// the checks lenient (strict false: an immobile VM, a guest without the
// suspend feature). The VM must be Running (VM_BAD_POWER_STATE) and
// allowed pool_migrate; then the target must pass assert_can_boot_here
// (reserve_memory_for_vm), which reserves the VM's memory there
// (scheduled_to_be_resident_on) while "pool_migrate" shows in its
// current_operations. At the end the VM runs on the target in a new domain,
// its networks attached there; the guest agent keeps running. The host it
// runs on is a valid target: xenopsd migrates it in place (a localhost
// migration).
func vmPoolMigrate(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	s := c.s
	host, err := s.db.mustGet("host", c.str(1))
	if err != nil {
		return nil, err
	}
	options, _ := c.args[2].(map[string]any)
	return c.vmOperation(vm, "pool_migrate", opSpec{
		lenient:     options["force"] == "true",
		progress:    xenopsProgress,
		cancellable: true,
		prepare: func() error {
			if f := s.assertCanBootHere(vm, host); f != nil {
				return f
			}
			s.db.update(vm, "scheduled_to_be_resident_on", host.ref)
			return nil
		},
		apply: func() (any, error) {
			s.migrateTo(vm, host)
			return nil, nil
		},
	})
}

// migrateTo moves a running vm onto host in a new domain, as a completed
// migration leaves it (pool_migrate_complete: resident_on set, state kept).
func (s *Server) migrateTo(vm, host *object) {
	s.setResident(vm, host)
	s.nextDomid++
	s.db.update(vm, "domid", s.nextDomid)
	for _, ref := range vm.set("VIFs") {
		if vif, ok := s.db.get("VIF", ref.(string)); ok {
			s.attachNetwork(vif.str("network"), host)
		}
	}
}

// haRestartPriorities are Constants.ha_valid_restart_priorities.
var haRestartPriorities = map[string]bool{"restart": true, "best-effort": true, "": true}

// vmSetHARestartPriority is VM.set_ha_restart_priority(self, value)
// (xapi_vm.ml): a value other than "restart", "best-effort" or "" is
// INVALID_VALUE ["ha_restart_priority"; value]; HA being off in the
// simulated pool, no failover plan is checked. A change on a running VM
// sets ha_always_run to whether the value is "restart".
func vmSetHARestartPriority(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	return nil, c.s.setHARestartPriority(vm, c.str(1))
}

func (s *Server) setHARestartPriority(vm *object, value string) error {
	if !haRestartPriorities[value] {
		return newFailure(errInvalidValue, "ha_restart_priority", value)
	}
	if vm.str("ha_restart_priority") != value {
		s.db.update(vm, "ha_restart_priority", value)
		if vm.str("power_state") == "Running" {
			s.db.update(vm, "ha_always_run", value == "restart")
		}
	}
	s.refreshAllowedOperations(vm)
	return nil
}

// vmSetHAAlwaysRun is the deprecated VM.set_ha_always_run(self, value):
// xapi degrades it to set_ha_restart_priority "restart" for true, "" for
// false.
func vmSetHAAlwaysRun(c *callCtx) (any, error) {
	vm, err := c.vm()
	if err != nil {
		return nil, err
	}
	value := ""
	if c.bool(1) {
		value = "restart"
	}
	return nil, c.s.setHARestartPriority(vm, value)
}
