package xapisim

import (
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// vbdRecord is the record VBD.create takes for a read-write data disk, with
// every field it requires.
func vbdRecord(vm, vdi, userdevice string) map[string]any {
	return map[string]any{
		"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": false, "mode": "RW", "type": "Disk",
		"empty": false, "other_config": map[string]string{}, "qos_algorithm_type": "",
		"qos_algorithm_params": map[string]string{},
	}
}

// emptyCD is the record VBD.create takes for an empty CD drive.
func emptyCD(vm, userdevice string) map[string]any {
	rec := vbdRecord(vm, nullRef, userdevice)
	rec["type"], rec["mode"], rec["empty"] = "CD", "RO", true
	return rec
}

// dataDisk creates a 1 GiB disk on the named SR.
func (c *rawClient) dataDisk(sr string) string {
	c.t.Helper()
	return c.must("VDI.create", vdiRecord(c.srRef(sr), gib)).(string)
}

// TestVBDCreateIsWhatXapiCreates checks VBD.create field by field against
// xapi_vbd.ml create: no device and not attached unless the VM is
// suspended; status 0, no runtime properties, no QoS algorithms supported;
// "autodetect" resolved to the first free disk number; the SM's
// backend-kind copied into other_config; an empty CD drive allowed.
func TestVBDCreateIsWhatXapiCreates(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "vbds")
	rec := c.must("VDI.create", func() map[string]any {
		r := vdiRecord(c.srRef(srLocal), gib)
		r["sm_config"] = map[string]string{"backend-kind": "vbd3"}
		return r
	}()).(string)
	vbdRec := vbdRecord(vm, rec, "autodetect")
	vbdRec["device"], vbdRec["currently_attached"] = "xvdq", true // ignored: the VM is halted
	vbdRec["other_config"] = map[string]string{"k": "v"}
	vbd := c.must("VBD.create", vbdRec).(string)
	got := c.must("VBD.get_record", vbd).(map[string]any)
	for k, v := range map[string]any{
		"VM": vm, "VDI": rec, "userdevice": "1", "device": "", "bootable": false, "mode": "RW", "type": "Disk",
		"unpluggable": true, "empty": false, "currently_attached": false, "storage_lock": false,
		"other_config": map[string]any{"k": "v", "backend-kind": "vbd3"}, "status_code": "0", "status_detail": "",
		"runtime_properties": map[string]any{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]any{},
		"qos_supported_algorithms": []any{}, "current_operations": map[string]any{},
		"allowed_operations": []any{"attach"},
	} {
		g.Expect(got).To(HaveKeyWithValue(k, v), k)
	}
	g.Expect(c.field("VM", vm, "VBDs")).To(ContainElement(vbd))
	g.Expect(c.field("VDI", rec, "VBDs")).To(ConsistOf(vbd))

	cd := c.must("VBD.create", emptyCD(vm, "3")).(string)
	got = c.must("VBD.get_record", cd).(map[string]any)
	g.Expect(got).To(HaveKeyWithValue("empty", true))
	g.Expect(got).To(HaveKeyWithValue("VDI", nullRef))
	g.Expect(got).To(HaveKeyWithValue("allowed_operations", ConsistOf("attach", "insert")))

	susp := c.install("Debian Bookworm 12", "suspended")
	c.putInState(susp, "Suspended")
	vbdRec = vbdRecord(susp, c.dataDisk(srNFS), "2")
	vbdRec["device"], vbdRec["currently_attached"] = "xvdc", true
	vbd = c.must("VBD.create", vbdRec).(string)
	g.Expect(c.field("VBD", vbd, "device")).To(Equal("xvdc"), "a suspended VM's VBD as given")
	g.Expect(c.field("VBD", vbd, "currently_attached")).To(BeTrue())

	task := c.must("Async.VBD.create", vbdRecord(vm, c.dataDisk(srNFS), "5")).(string)
	g.Eventually(func() any { return c.field("task", task, "status") }, 5*time.Second).Should(Equal("success"))
}

// TestVBDCreateErrors checks VBD.create's refusals in xapi_vbd.ml create's
// order, and its device rules (xapi_vbd_helpers.ml valid_device,
// xapi_vm_helpers.ml possible_VBD_devices_of_string: "0", "xvda" and "hda"
// name the same disk).
func TestVBDCreateErrors(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "bad-vbds")
	disk := c.dataDisk(srNFS)
	ro := c.must("VDI.create", func() map[string]any {
		r := vdiRecord(c.srRef(srNFS), gib)
		r["read_only"] = true
		return r
	}()).(string)
	statefile := c.must("VDI.create", func() map[string]any {
		r := vdiRecord(c.srRef(srNFS), gib)
		r["type"] = "ha_statefile"
		return r
	}()).(string)
	with := func(rec map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			rec[kv[i].(string)] = kv[i+1]
		}
		return rec
	}
	missing := vbdRecord(vm, disk, "1")
	delete(missing, "mode")
	for _, tc := range []struct {
		name string
		rec  map[string]any
		want OmegaMatcher
	}{
		{"a required field missing", missing, failWith(errInternalError, `Server_helpers.Dispatcher_FieldNotFound("mode")`)},
		{"an unknown VM", vbdRecord(nullRef, disk, "1"), failWith(errHandleInvalid, "VM", nullRef)},
		{"no disk", vbdRecord(vm, nullRef, "1"), failWith(errHandleInvalid, "VDI", nullRef)},
		{"a disk of a type VBDs do not attach", vbdRecord(vm, statefile, "1"),
			failWith(errVDIIncompatibleType, statefile, "ha_statefile")},
		{"a read-write CD", with(vbdRecord(vm, disk, "1"), "type", "CD"), failWith(errVBDCDsMustBeReadonly)},
		{"an empty disk", with(vbdRecord(vm, nullRef, "1"), "empty", true),
			failWith(errVBDNotRemovableMedia, "in constructor")},
		{"a read-only disk read-write", vbdRecord(vm, ro, "1"), failWith(errVDIReadonly, ro)},
		{"a floppy on a PV guest", with(vbdRecord(vm, disk, "autodetect"), "type", "Floppy"),
			failWith(errNotImplemented, "VBD of type 'floppy' is not supported on PV domain")},
		{"a device that is none", vbdRecord(vm, disk, "eth0"), failWith(errInvalidDevice, "eth0")},
		{"a used disk number", vbdRecord(vm, disk, "0"), failWith(errDeviceAlreadyExists, "0")},
		{"a used disk's name", vbdRecord(vm, disk, "xvda"), failWith(errDeviceAlreadyExists, "xvda")},
		{"a used disk's IDE name", vbdRecord(vm, disk, "hda"), failWith(errDeviceAlreadyExists, "hda")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, f := c.do("VBD.create", tc.rec)
			g.Expect(f).To(tc.want)
		})
	}
	t.Run("nothing was created", func(t *testing.T) {
		NewWithT(t).Expect(c.field("VM", vm, "VBDs")).To(HaveLen(1))
	})
	t.Run("any integer passes xapi's device check", func(t *testing.T) {
		// valid_device's range test is n >= 0 || n < 16.
		g := NewWithT(t)
		vbd := c.must("VBD.create", vbdRecord(vm, disk, "-1")).(string)
		g.Expect(c.field("VBD", vbd, "userdevice")).To(Equal("-1"))
	})
	t.Run("a read-only disk as a CD", func(t *testing.T) {
		g := NewWithT(t)
		vbd := c.must("VBD.create", with(vbdRecord(vm, ro, "3"), "type", "CD", "mode", "RO")).(string)
		g.Expect(c.field("VBD", vbd, "allowed_operations")).To(ConsistOf("attach", "eject"))
	})
}

// TestAllowedVBDDevices checks VM.get_allowed_VBD_devices (xapi_vm.ml,
// xapi_vm_helpers.ml allowed_VBD_devices): disk numbers 0 to 254, less
// those the VM's VBDs name by device or userdevice; no Async form.
func TestAllowedVBDDevices(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	from := func(first int, skip ...int) []any {
		out := []any{}
		for n := first; n <= 254; n++ {
			if !containsInt(skip, n) {
				out = append(out, strconv.Itoa(n))
			}
		}
		return out
	}
	for _, tm := range []string{"Debian Bookworm 12", "Windows 10 (64-bit)"} {
		vm := c.install(tm, "devices "+tm)
		g.Expect(c.must("VM.get_allowed_VBD_devices", vm)).To(Equal(from(1)), tm)
		c.must("VBD.create", vbdRecord(vm, c.dataDisk(srNFS), "xvdc"))
		c.must("VBD.create", emptyCD(vm, "d7"))
		if tm == "Debian Bookworm 12" {
			g.Expect(c.must("VM.get_allowed_VBD_devices", vm)).To(Equal(from(1, 2, 7)), tm)
			continue
		}
		// An HVM guest's disk 2 is an IDE device, which "xvdc" (a Xen one)
		// does not take: xapi offers it, and VBD.create then finds it taken.
		g.Expect(c.must("VM.get_allowed_VBD_devices", vm)).To(Equal(from(1, 7)), tm)
		_, f := c.do("VBD.create", vbdRecord(vm, c.dataDisk(srNFS), "2"))
		g.Expect(f).To(failWith(errDeviceAlreadyExists, "2"))
	}
	_, f := c.do("VM.get_allowed_VBD_devices", nullRef)
	g.Expect(f).To(failWith(errHandleInvalid, "VM", nullRef))
	_, f = c.do("Async.VM.get_allowed_VBD_devices", c.vmByName("Debian Bookworm 12"))
	g.Expect(f).To(failWith("Fault", "No async mode for this operation (rpc: VM.get_allowed_VBD_devices)"))
}

func containsInt(s []int, n int) bool {
	for _, x := range s {
		if x == n {
			return true
		}
	}
	return false
}

// TestVBDPlugAndUnplug checks VBD.plug and VBD.unplug against
// xapi_vbd_helpers.ml valid_operations: a VBD that is not unpluggable never
// unplugs, whatever the VM's state; a running VM only, not twice; an HVM
// guest needs PV drivers and never hot-plugs a CD; plugged, the VBD has its
// device name; an attached VBD is not destroyed.
func TestVBDPlugAndUnplug(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()

	t.Run("on a PV guest", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "hotplug")
		system := c.field("VM", vm, "VBDs").([]any)[0].(string)
		vbd := c.must("VBD.create", vbdRecord(vm, c.dataDisk(srNFS), "1")).(string)
		cd := c.must("VBD.create", emptyCD(vm, "3")).(string)
		_, f := c.do("VBD.unplug", system)
		g.Expect(f).To(failWith(errVBDNotUnpluggable, system), "checked before the power state")
		_, f = c.do("VBD.plug", vbd)
		g.Expect(f).To(failWith(errVMBadPowerState, vm, "running", "halted"))

		c.must("VM.start", vm, false, false)
		g.Expect(c.field("VBD", vbd, "currently_attached")).To(BeTrue(), "attached at boot")
		g.Expect(c.field("VBD", cd, "currently_attached")).To(BeFalse(), "a PV guest's empty CD drive is unplugged")
		g.Expect(c.field("VBD", vbd, "allowed_operations")).To(ConsistOf("attach", "unplug", "unplug_force",
			"pause", "unpause"))
		_, f = c.do("VBD.plug", vbd)
		g.Expect(f).To(failWith(errDeviceAlreadyAttached, vbd))
		_, f = c.do("VBD.unplug_force", system)
		g.Expect(f).To(failWith(errVBDNotUnpluggable, system))
		_, f = c.do("VBD.destroy", vbd)
		g.Expect(f).To(failWith(errOperationNotAllowed, "VBD '"+c.field("VBD", vbd, "uuid").(string)+
			"' still attached to '"+c.field("VM", vm, "uuid").(string)+"'"))
		c.must("VBD.unplug", vbd)
		g.Expect(c.field("VBD", vbd, "currently_attached")).To(BeFalse())
		_, f = c.do("VBD.unplug", vbd)
		g.Expect(f).To(failWith(errDeviceAlreadyDetached, vbd))
		c.must("VBD.destroy", vbd)

		added := c.must("VBD.create", vbdRecord(vm, c.dataDisk(srLocal), "autodetect")).(string)
		g.Expect(c.field("VBD", added, "userdevice")).To(Equal("1"))
		g.Expect(c.field("VBD", added, "currently_attached")).To(BeFalse(), "created detached on a running VM")
		task := c.must("Async.VBD.plug", added).(string)
		g.Eventually(func() any { return c.field("task", task, "status") }, 5*time.Second).Should(Equal("success"))
		g.Expect(c.field("VBD", added, "currently_attached")).To(BeTrue())
		g.Expect(c.field("VBD", added, "device")).To(Equal("xvdb"))
	})
	t.Run("on an HVM guest without PV drivers", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Other install media", "no-drivers")
		cd := c.must("VBD.create", emptyCD(vm, "3")).(string)
		c.must("VM.start", vm, false, false)
		g.Expect(c.field("VBD", cd, "currently_attached")).To(BeTrue(), "an HVM guest's empty CD drive is plugged")
		g.Expect(c.field("VBD", cd, "device")).To(Equal("xvdd"))
		vbd := c.must("VBD.create", vbdRecord(vm, c.dataDisk(srNFS), "1")).(string)
		_, f := c.do("VBD.plug", vbd)
		g.Expect(f).To(failWith(errVMMissingPVDrivers, vm))
	})
	t.Run("on an HVM guest with PV drivers", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Windows Server 2022 (64-bit)", "drivers")
		cd := c.must("VBD.create", emptyCD(vm, "3")).(string)
		c.must("VM.start", vm, false, false)
		vbd := c.must("VBD.create", vbdRecord(vm, c.dataDisk(srNFS), "4")).(string)
		c.must("VBD.plug", vbd)
		g.Expect(c.field("VBD", vbd, "device")).To(Equal("xvde"))
		_, f := c.do("VBD.unplug", cd)
		g.Expect(f).To(failWith(errOperationNotAllowed, "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"))
	})
}

// TestADiskIsWrittenByOneVM checks the sharing rule of xapi_vbd_helpers.ml
// valid_operations: a disk attached read-write to a running VM is
// VDI_IN_USE [vdi] for another VM's start (message_forwarding.ml marks every
// VBD for attach) and plug, unless it is sharable; and a VBD cannot reach a
// disk on another host's local SR (SR_NOT_ATTACHED).
func TestADiskIsWrittenByOneVM(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	a := c.install("Debian Bookworm 12", "a")
	b := c.install("Debian Bookworm 12", "b")
	disk := c.dataDisk(srNFS)
	c.must("VBD.create", vbdRecord(a, disk, "1"))
	onB := c.must("VBD.create", vbdRecord(b, disk, "1")).(string)
	c.must("VM.start", a, false, false)
	_, f := c.do("VM.start", b, false, false)
	g.Expect(f).To(failWith(errVDIInUse, disk))
	c.must("VBD.destroy", onB)
	c.must("VM.start", b, false, false)
	onB = c.must("VBD.create", vbdRecord(b, disk, "1")).(string)
	_, f = c.do("VBD.plug", onB)
	g.Expect(f).To(failWith(errVDIInUse, disk))
	c.must("VM.hard_shutdown", a)
	c.must("VBD.plug", onB)

	hosts := c.must("host.get_all").([]any)
	other := hosts[0].(string)
	if c.field("VM", b, "resident_on") == other {
		other = hosts[1].(string)
	}
	farSR := c.field("host", other, "suspend_image_sr").(string)
	far := c.must("VDI.create", vdiRecord(farSR, gib)).(string)
	vbd := c.must("VBD.create", vbdRecord(b, far, "2")).(string)
	_, f = c.do("VBD.plug", vbd)
	g.Expect(f).To(failWith(errSRNotAttached, farSR))
}
