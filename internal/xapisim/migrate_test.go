package xapisim

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestPoolMigrate: message_forwarding.ml pool_migrate, xapi_vm_migrate.ml
// pool_migrate, xapi_vm_helpers.ml assert_can_boot_here.
func TestPoolMigrate(t *testing.T) {
	s := newSim(t, Config{Hosts: 2, OpDurations: map[string]time.Duration{"pool_migrate": 200 * time.Millisecond}})
	c := newClient(t, s.URL()).login()
	hosts := c.must("host.get_all").([]any)
	other := func(h any) string {
		if h == hosts[0] {
			return hosts[1].(string)
		}
		return hosts[0].(string)
	}

	t.Run("a running VM moves, showing pool_migrate meanwhile", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "mover")
		c.createVIF(vm, networkEth0, "0")
		c.putInState(vm, "Running")
		from := c.field("VM", vm, "resident_on")
		to := other(from)
		domid := c.field("VM", vm, "domid")
		c.must("VM.assert_can_boot_here", vm, to)
		task := c.must("Async.VM.pool_migrate", vm, to, map[string]string{}).(string)
		g.Eventually(func() any { return c.field("VM", vm, "current_operations") }).
			Should(HaveKeyWithValue(task, "pool_migrate"))
		g.Expect(c.field("VM", vm, "scheduled_to_be_resident_on")).To(Equal(to))
		_, f := c.do("VM.clean_shutdown", vm)
		g.Expect(f).To(failWith(errOtherOperationInProgress, "VM", vm, "pool_migrate", task))
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("success"))
		rec := c.must("VM.get_record", vm).(map[string]any)
		g.Expect(rec["resident_on"]).To(Equal(to))
		g.Expect(rec["power_state"]).To(Equal("Running"))
		g.Expect(rec["domid"]).NotTo(Equal(domid))
		g.Expect(rec["current_operations"]).To(BeEmpty())
		g.Expect(c.field("host", to, "resident_VMs")).To(ContainElement(vm))
		g.Expect(c.field("host", from.(string), "resident_VMs")).NotTo(ContainElement(vm))

		// The host it runs on: a localhost migration, even disabled.
		c.must("host.disable", to)
		c.must("VM.pool_migrate", vm, to, map[string]string{})
		g.Expect(c.field("VM", vm, "resident_on")).To(Equal(to))
		_, f = c.do("VM.pool_migrate", vm, from, map[string]string{})
		g.Expect(f).NotTo(HaveOccurred())
		c.must("host.enable", to)
	})
	t.Run("checks", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "checked")
		_, f := c.do("VM.pool_migrate", vm, hosts[0], map[string]string{})
		g.Expect(f).To(failWith(errVMBadPowerState, vm, "running", "halted"))
		c.putInState(vm, "Running")
		to := other(c.field("VM", vm, "resident_on"))
		c.must("VM.add_to_blocked_operations", vm, "pool_migrate", "no")
		_, f = c.do("VM.pool_migrate", vm, to, map[string]string{})
		g.Expect(f).To(failWith(errOperationBlocked, vm, "no"))
		c.must("VM.remove_from_blocked_operations", vm, "pool_migrate")
		c.must("host.disable", to)
		_, f = c.do("VM.pool_migrate", vm, to, map[string]string{})
		g.Expect(f).To(failWith(errHostDisabled, to))
		_, f = c.do("VM.assert_can_boot_here", vm, to)
		g.Expect(f).To(failWith(errHostDisabled, to))
		c.must("host.enable", to)
		g.Expect(c.field("VM", vm, "allowed_operations")).To(ContainElement("pool_migrate"))
	})
	t.Run("a disk on the other host's local SR", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "local")
		local := ""
		for _, pbd := range c.field("host", hosts[0].(string), "PBDs").([]any) {
			if sr := c.field("PBD", pbd.(string), "SR").(string); c.field("SR", sr, "type") == "lvm" {
				local = sr
			}
		}
		vdi := c.must("VDI.create", map[string]any{"name_label": "d", "name_description": "", "SR": local,
			"virtual_size": "1073741824", "type": "user", "sharable": false, "read_only": false,
			"other_config": map[string]string{}, "xenstore_data": map[string]string{}, "sm_config": map[string]string{},
			"tags": []string{}}).(string)
		c.must("VBD.create", map[string]any{"VM": vm, "VDI": vdi, "userdevice": "1", "bootable": false, "mode": "RW",
			"type": "Disk", "unpluggable": true, "empty": false, "other_config": map[string]string{},
			"qos_algorithm_type": "", "qos_algorithm_params": map[string]string{}})
		c.must("VM.start_on", vm, hosts[0], false, false)
		_, f := c.do("VM.pool_migrate", vm, hosts[1], map[string]string{})
		g.Expect(f).To(failWith(errVMRequiresSR, vm, local))
	})
}

// TestHARestartPriority: xapi_vm.ml set_ha_restart_priority, set_ha_always_run.
func TestHARestartPriority(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "ha")
	_, f := c.do("VM.set_ha_restart_priority", vm, "1")
	g.Expect(f).To(failWith(errInvalidValue, "ha_restart_priority", "1"))
	c.must("VM.set_ha_restart_priority", vm, "best-effort")
	g.Expect(c.field("VM", vm, "ha_restart_priority")).To(Equal("best-effort"))
	g.Expect(c.field("VM", vm, "ha_always_run")).To(BeFalse())
	c.putInState(vm, "Running")
	c.must("VM.set_ha_restart_priority", vm, "restart")
	g.Expect(c.field("VM", vm, "ha_always_run")).To(BeTrue(), "a running VM is protected at once")
	c.must("VM.set_ha_always_run", vm, false)
	g.Expect(c.field("VM", vm, "ha_restart_priority")).To(Equal(""))
	g.Expect(c.field("VM", vm, "ha_always_run")).To(BeFalse())
	_, f = c.do("Async.VM.set_ha_restart_priority", vm, "restart")
	g.Expect(f).To(HaveOccurred(), "no Async form (datamodel_vm.ml flags [`Session])")
}

// TestPoolMigrateForce: an immobile VM (platform:nomigrate, recorded in
// VM_metrics at boot) migrates only with options force=true
// (check_operation_error with strict false).
func TestPoolMigrateForce(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "pinned")
	c.must("VM.add_to_platform", vm, "nomigrate", "true")
	c.putInState(vm, "Running")
	hosts := c.must("host.get_all").([]any)
	to := hosts[0].(string)
	if c.field("VM", vm, "resident_on") == to {
		to = hosts[1].(string)
	}
	_, f := c.do("VM.pool_migrate", vm, to, map[string]string{})
	g.Expect(f).To(failWith(errVMIsImmobile, vm))
	g.Expect(c.field("VM", vm, "allowed_operations")).NotTo(ContainElement("pool_migrate"))
	c.must("VM.pool_migrate", vm, to, map[string]string{"force": "true"})
	g.Expect(c.field("VM", vm, "resident_on")).To(Equal(to))
}
