package xapisim

import (
	"testing"

	. "github.com/onsi/gomega"
)

// diskOf is the VDI of the VM's first disk VBD.
func (c *rawClient) diskOf(vm string) string {
	c.t.Helper()
	for _, ref := range c.field("VM", vm, "VBDs").([]any) {
		if rec := c.must("VBD.get_record", ref).(map[string]any); rec["type"] == "Disk" {
			return rec["VDI"].(string)
		}
	}
	c.t.Fatalf("VM %s has no disk", vm)
	return ""
}

// TestSnapshotIsWhatXapiMakes: xapi_vm_clone.ml copy_vm_record with
// Disk_op_snapshot, xapi_vdi.ml snapshot.
func TestSnapshotIsWhatXapiMakes(t *testing.T) {
	for _, state := range []string{"Halted", "Running", "Paused", "Suspended"} {
		t.Run("from "+state, func(t *testing.T) {
			g := NewWithT(t)
			s := newSim(t, Config{})
			c := newClient(t, s.URL()).login()
			vm := c.install("Debian Bookworm 12", "source")
			vif := c.createVIF(vm, networkEth0, "0")
			c.must("VM.add_to_other_config", vm, "xen-operator.io/owner", "uid-1")
			c.must("VM.set_tags", vm, []string{"kept"})
			c.must("VM.add_to_blocked_operations", vm, "destroy", "protected")
			c.putInState(vm, state)
			vmRec := c.must("VM.get_record", vm).(map[string]any)
			disk := c.diskOf(vm)

			snap := c.must("VM.snapshot", vm, "snap").(string)
			rec := c.must("VM.get_record", snap).(map[string]any)
			g.Expect(rec["is_a_snapshot"]).To(BeTrue())
			g.Expect(rec["is_a_template"]).To(BeTrue())
			g.Expect(rec["snapshot_of"]).To(Equal(vm))
			g.Expect(rec["power_state"]).To(Equal("Halted"), "a snapshot is Halted whatever the VM's state")
			g.Expect(rec["suspend_VDI"]).To(Equal(nullRef), "Disk_op_snapshot leaves the suspend image out")
			g.Expect(rec["name_label"]).To(Equal("snap"))
			g.Expect(rec["snapshot_info"]).To(Equal(map[string]any{
				"power-state-at-snapshot": state, "disk-snapshot-type": "crash_consistent"}))
			g.Expect(rec["snapshot_metadata"]).To(ContainSubstring("('name__label' 'source')"))
			// other_config is the VM's, mac_seed and the operator's key kept;
			// tags too; blocked_operations are not copied.
			g.Expect(rec["other_config"]).To(Equal(vmRec["other_config"]))
			g.Expect(rec["other_config"]).To(HaveKeyWithValue("xen-operator.io/owner", "uid-1"))
			g.Expect(rec["tags"]).To(Equal([]any{"kept"}))
			g.Expect(rec["blocked_operations"]).To(BeEmpty())
			g.Expect(c.field("VM", vm, "snapshots")).To(ConsistOf(snap))
			g.Expect(c.field("VM", vm, "parent")).To(Equal(snap), "the snapshot becomes the VM's parent")
			g.Expect(c.field("VM", vm, "power_state")).To(Equal(state), "the VM is untouched")
			g.Expect(rec["allowed_operations"]).To(ConsistOf("clone", "copy", "destroy", "revert"), "hard_shutdown needs a domain")

			// The disk is snapshotted, the VIF copied with its MAC.
			snapDisk := c.diskOf(snap)
			vdi := c.must("VDI.get_record", snapDisk).(map[string]any)
			g.Expect(vdi["is_a_snapshot"]).To(BeTrue())
			g.Expect(vdi["snapshot_of"]).To(Equal(disk))
			g.Expect(c.field("VDI", disk, "snapshots")).To(ConsistOf(snapDisk))
			snapVIFs := c.field("VM", snap, "VIFs").([]any)
			g.Expect(snapVIFs).To(HaveLen(1))
			g.Expect(c.field("VIF", snapVIFs[0].(string), "MAC")).To(Equal(c.field("VIF", vif, "MAC")))
			g.Expect(c.field("VIF", snapVIFs[0].(string), "currently_attached")).To(BeFalse())

			// A snapshot is not started: VM_IS_SNAPSHOT (check_snapshot).
			_, f := c.do("VM.start", snap, false, false)
			g.Expect(f).To(failWith(errVMIsSnapshot, snap, "start"))
			// Destroying it leaves its disks (xapi_vm_helpers.ml destroy).
			c.must("VM.destroy", snap)
			g.Expect(c.field("VDI", snapDisk, "is_a_snapshot")).To(BeTrue())
			g.Expect(c.field("VM", vm, "snapshots")).To(BeEmpty())
			g.Expect(c.field("VM", vm, "parent")).To(Equal(nullRef), "children rebased on the parent")
		})
	}
}

func TestSnapshotChecks(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()

	t.Run("ignore_vdis leaves those disks out", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "ignore")
		snap := c.must("VM.snapshot", vm, "snap", []string{c.diskOf(vm)}).(string)
		g.Expect(c.field("VM", snap, "VBDs")).To(BeEmpty())
	})
	t.Run("blocked", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "blocked")
		c.must("VM.add_to_blocked_operations", vm, "snapshot", "no")
		_, f := c.do("VM.snapshot", vm, "snap")
		g.Expect(f).To(failWith(errOperationBlocked, vm, "no"))
	})
	t.Run("a template", func(t *testing.T) {
		g := NewWithT(t)
		tmpl := c.vmByName("Debian Bookworm 12")
		_, f := c.do("VM.snapshot", tmpl, "snap")
		g.Expect(f).To(failWith(errVMIsTemplate, tmpl, "snapshot"))
	})
	t.Run("a snapshot", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "snapsnap")
		snap := c.must("VM.snapshot", vm, "snap").(string)
		_, f := c.do("VM.snapshot", snap, "again")
		g.Expect(f).To(failWith(errVMIsSnapshot, snap, "snapshot"))
	})
	t.Run("a sharable disk", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "sharable")
		disk := c.diskOf(vm)
		c.must("VDI.set_sharable", disk, true)
		_, f := c.do("VM.snapshot", vm, "snap")
		g.Expect(f).To(failWith(errVDIIsSharable, disk))
		g.Expect(c.field("VM", vm, "snapshots")).To(BeEmpty())
	})
	t.Run("an LVM SR without room", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.must("VM.clone", c.vmByName("Debian Bookworm 12"), "lvm").(string)
		host := c.must("host.get_all").([]any)[0].(string)
		var local string
		for _, pbd := range c.field("host", host, "PBDs").([]any) {
			sr := c.field("PBD", pbd.(string), "SR").(string)
			if c.field("SR", sr, "type") == "lvm" {
				local = sr
			}
		}
		oc := c.must("VM.get_other_config", vm).(map[string]any)
		c.must("VM.remove_from_other_config", vm, "disks")
		c.must("VM.add_to_other_config", vm, "disks",
			`<provision><disk device="0" size="8589934592" sr="`+c.field("SR", local, "uuid").(string)+`" bootable="true" type="system"/></provision>`)
		_ = oc
		c.must("VM.provision", vm)
		used := c.field("SR", local, "physical_utilisation").(string)
		c.post("/sim/sr?name="+c.field("SR", local, "uuid").(string)+"&free=1048576", "text/plain", nil)
		_, f := c.do("VM.snapshot", vm, "snap")
		g.Expect(f).To(failWith("SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""))
		g.Expect(c.field("SR", local, "physical_utilisation")).To(Equal(used), "nothing made")
	})
	t.Run("a checkpoint of a running VM", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "checkpoint")
		c.putInState(vm, "Running")
		domid := c.field("VM", vm, "domid")
		host := c.field("VM", vm, "resident_on")
		snap := c.must("VM.checkpoint", vm, "cp").(string)
		rec := c.must("VM.get_record", snap).(map[string]any)
		g.Expect(rec["power_state"]).To(Equal("Suspended"))
		g.Expect(rec["suspend_VDI"]).NotTo(Equal(nullRef))
		g.Expect(c.field("VDI", rec["suspend_VDI"].(string), "is_a_snapshot")).To(BeTrue())
		g.Expect(c.field("VM", vm, "power_state")).To(Equal("Running"))
		g.Expect(c.field("VM", vm, "suspend_VDI")).To(Equal(nullRef))
		g.Expect(c.field("VM", vm, "resident_on")).To(Equal(host))
		g.Expect(c.field("VM", vm, "domid")).NotTo(Equal(domid), "resumed in a new domain")
		_, f := c.do("VM.checkpoint", c.install("Debian Bookworm 12", "halted"), "cp")
		g.Expect(f).To(failWith(errVMBadPowerState))
	})
}

// TestRevert: message_forwarding.ml revert, xapi_vm_snapshot.ml revert.
func TestRevert(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()

	t.Run("a running VM goes back to its disk snapshot, Halted", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "before")
		c.createVIF(vm, networkEth0, "0")
		c.must("VM.add_to_other_config", vm, "xen-operator.io/owner", "uid-1")
		c.must("VM.set_tags", vm, []string{"old"})
		c.must("VM.add_to_blocked_operations", vm, "destroy", "protected")
		c.putInState(vm, "Running")
		oldDisk := c.diskOf(vm)
		snap := c.must("VM.snapshot", vm, "snap").(string)
		snapDisk := c.diskOf(snap)
		mac := c.field("VIF", c.field("VM", vm, "VIFs").([]any)[0].(string), "MAC")

		c.must("VM.set_name_label", vm, "after")
		c.must("VM.remove_from_other_config", vm, "xen-operator.io/owner")
		c.must("VM.add_to_other_config", vm, "later", "x")
		c.must("VM.set_tags", vm, []string{"new"})
		c.must("VM.remove_from_blocked_operations", vm, "destroy")

		_, f := c.do("VM.revert", vm)
		g.Expect(f).To(failWith(errVMRevertFailed, vm, nullRef), "a VM that is not a snapshot has no VM to revert")

		c.must("VM.revert", snap)
		rec := c.must("VM.get_record", vm).(map[string]any)
		g.Expect(rec["power_state"]).To(Equal("Halted"))
		g.Expect(rec["resident_on"]).To(Equal(nullRef))
		g.Expect(rec["name_label"]).To(Equal("before"), "restored from the metadata")
		g.Expect(rec["other_config"]).To(HaveKeyWithValue("xen-operator.io/owner", "uid-1"))
		g.Expect(rec["other_config"]).NotTo(HaveKey("later"))
		g.Expect(rec["blocked_operations"]).To(HaveKeyWithValue("destroy", "protected"))
		g.Expect(rec["tags"]).To(Equal([]any{"new"}), "tags are kept")
		g.Expect(rec["is_a_snapshot"]).To(BeFalse())
		g.Expect(rec["is_a_template"]).To(BeFalse())
		g.Expect(rec["parent"]).To(Equal(snap))
		g.Expect(c.field("VM", snap, "snapshot_of")).To(Equal(vm))

		_, f = c.do("VDI.get_record", oldDisk)
		g.Expect(f).To(failWith(errHandleInvalid, "VDI", oldDisk), "the old disk is destroyed")
		newDisk := c.diskOf(vm)
		g.Expect(newDisk).NotTo(Equal(snapDisk))
		g.Expect(c.field("VDI", newDisk, "is_a_snapshot")).To(BeFalse())
		g.Expect(c.field("VDI", snapDisk, "snapshot_of")).To(Equal(newDisk), "the snapshot now of the new disk")
		g.Expect(c.field("VIF", c.field("VM", vm, "VIFs").([]any)[0].(string), "MAC")).To(Equal(mac))

		c.must("VM.start", vm, false, false)
		g.Expect(c.field("VM", vm, "power_state")).To(Equal("Running"))
	})
	t.Run("a blocked hard_shutdown stops the revert of a running VM", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "noshutdown")
		c.putInState(vm, "Running")
		snap := c.must("VM.snapshot", vm, "snap").(string)
		c.must("VM.add_to_blocked_operations", vm, "hard_shutdown", "no")
		_, f := c.do("VM.revert", snap)
		g.Expect(f).To(failWith(errOperationBlocked, vm, "no"))
		g.Expect(c.field("VM", vm, "power_state")).To(Equal("Running"))
		g.Expect(c.field("VM", vm, "current_operations")).To(BeEmpty())
	})
	t.Run("a checkpoint comes back Suspended", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "cp")
		c.putInState(vm, "Running")
		snap := c.must("VM.checkpoint", vm, "cp").(string)
		c.must("VM.revert", snap)
		g.Expect(c.field("VM", vm, "power_state")).To(Equal("Suspended"))
		image := c.field("VM", vm, "suspend_VDI").(string)
		g.Expect(image).NotTo(Equal(c.field("VM", snap, "suspend_VDI")))
		c.must("VM.resume", vm, false, false)
		g.Expect(c.field("VM", vm, "power_state")).To(Equal("Running"))
	})
	t.Run("the snapshot of a destroyed VM", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "gone")
		snap := c.must("VM.snapshot", vm, "snap").(string)
		c.must("VM.destroy", vm)
		_, f := c.do("VM.revert", snap)
		g.Expect(f).To(failWith(errVMRevertFailed, snap, vm))
	})
}
