package xapisim

import (
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// provisionOn clones template and provisions its disks on the SR whose uuid
// is given, as xe vm-install does (XENAPI.md §7.4).
func (c *rawClient) provisionOn(template, name, srUUID string) string {
	c.t.Helper()
	vm := c.must("VM.clone", c.vmByName(template), name).(string)
	disks := c.must("VM.get_other_config", vm).(map[string]any)["disks"].(string)
	c.must("VM.remove_from_other_config", vm, "disks")
	c.must("VM.add_to_other_config", vm, "disks", strings.ReplaceAll(disks, `sr=""`, `sr="`+srUUID+`"`))
	c.must("VM.provision", vm)
	return vm
}

// TestProvisionedDisksAreWhatXapiCreates checks the VDI and VBD that
// VM.provision makes, field by field, against xapi's constructors:
// xapi_templates.ml create_disk calls VDI.create (name "" then the
// userdevice, "Created by template provisioner", sm_config vmhint) and
// VBD.create (mode RW, type Disk, unpluggable unless a system disk,
// other_config owner); xapi_vdi.ml create records what the SM driver
// introduces (introduce_dbonly: managed, on_boot persist, location, not a
// snapshot, missing false); xapi_vbd.ml create leaves device empty and the
// VBD detached on a halted VM.
func TestProvisionedDisksAreWhatXapiCreates(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	pool := c.must("pool.get_all").([]any)[0]
	nfs := c.must("pool.get_default_SR", pool).(string)
	var local string
	for ref, sr := range c.records("SR") {
		if sr["type"] == "lvm" {
			local = ref
		}
	}
	const size = 10 << 30 // the Debian template's disk

	check := func(t *testing.T, sr string) (vm, vdi string, vbdRec, vdiRec map[string]any) {
		g := NewWithT(t)
		srBefore := c.must("SR.get_record", sr).(map[string]any)
		vm = c.provisionOn("Debian Bookworm 12", "disks-"+sr, c.field("SR", sr, "uuid").(string))
		g.Expect(c.field("VM", vm, "other_config")).NotTo(HaveKey("disks"), "post_install removes the disks key")
		vbds := c.field("VM", vm, "VBDs").([]any)
		g.Expect(vbds).To(HaveLen(1))
		vbdRec = c.must("VBD.get_record", vbds[0]).(map[string]any)
		g.Expect(vbdRec).To(HaveKeyWithValue("VM", vm))
		g.Expect(vbdRec).To(HaveKeyWithValue("userdevice", "0"))
		g.Expect(vbdRec).To(HaveKeyWithValue("device", ""))
		g.Expect(vbdRec).To(HaveKeyWithValue("bootable", true))
		g.Expect(vbdRec).To(HaveKeyWithValue("mode", "RW"))
		g.Expect(vbdRec).To(HaveKeyWithValue("type", "Disk"))
		g.Expect(vbdRec).To(HaveKeyWithValue("unpluggable", false), "a system disk")
		g.Expect(vbdRec).To(HaveKeyWithValue("empty", false))
		g.Expect(vbdRec).To(HaveKeyWithValue("storage_lock", false))
		g.Expect(vbdRec).To(HaveKeyWithValue("currently_attached", false))
		g.Expect(vbdRec).To(HaveKeyWithValue("status_code", "0"))
		g.Expect(vbdRec).To(HaveKeyWithValue("other_config", map[string]any{"owner": ""}))
		g.Expect(vbdRec).To(HaveKeyWithValue("qos_algorithm_type", ""))
		g.Expect(vbdRec).To(HaveKeyWithValue("allowed_operations", []any{"attach"}),
			"a halted VM's disk: no plug, unplug, pause; not a CD")
		vdi = vbdRec["VDI"].(string)
		vdiRec = c.must("VDI.get_record", vdi).(map[string]any)
		g.Expect(vdiRec).To(HaveKeyWithValue("name_label", "0"), "named after the VBD's userdevice")
		g.Expect(vdiRec).To(HaveKeyWithValue("name_description", "Created by template provisioner"))
		g.Expect(vdiRec).To(HaveKeyWithValue("SR", sr))
		g.Expect(vdiRec).To(HaveKeyWithValue("VBDs", []any{vbds[0]}))
		g.Expect(vdiRec).To(HaveKeyWithValue("virtual_size", "10737418240"))
		g.Expect(vdiRec).To(HaveKeyWithValue("type", "system"))
		g.Expect(vdiRec).To(HaveKeyWithValue("sharable", false))
		g.Expect(vdiRec).To(HaveKeyWithValue("read_only", false))
		g.Expect(vdiRec).To(HaveKeyWithValue("managed", true))
		g.Expect(vdiRec).To(HaveKeyWithValue("missing", false))
		g.Expect(vdiRec).To(HaveKeyWithValue("on_boot", "persist"))
		g.Expect(vdiRec).To(HaveKeyWithValue("location", vdiRec["uuid"]), "SM names the volume after the uuid")
		g.Expect(vdiRec).To(HaveKeyWithValue("is_a_snapshot", false))
		g.Expect(vdiRec).To(HaveKeyWithValue("snapshot_of", nullRef))
		g.Expect(vdiRec).To(HaveKeyWithValue("parent", nullRef))
		g.Expect(vdiRec).To(HaveKeyWithValue("storage_lock", false))
		g.Expect(vdiRec).To(HaveKeyWithValue("allow_caching", false))
		g.Expect(vdiRec).To(HaveKeyWithValue("metadata_of_pool", nullRef))
		g.Expect(vdiRec).To(HaveKeyWithValue("is_tools_iso", false))
		g.Expect(vdiRec).To(HaveKeyWithValue("cbt_enabled", false))
		g.Expect(vdiRec).To(HaveKeyWithValue("xenstore_data", map[string]any{}))
		g.Expect(vdiRec).To(HaveKeyWithValue("other_config", map[string]any{}))
		g.Expect(vdiRec).To(HaveKeyWithValue("tags", []any{}))
		g.Expect(c.field("SR", sr, "VDIs")).To(ContainElement(vdi))
		srAfter := c.must("SR.get_record", sr).(map[string]any)
		g.Expect(srAfter["virtual_allocation"]).To(Equal(addInts(srBefore["virtual_allocation"], size)))
		g.Expect(srAfter["physical_utilisation"]).To(Equal(addInts(srBefore["physical_utilisation"],
			vdiRec["physical_utilisation"])))
		return vm, vdi, vbdRec, vdiRec
	}

	t.Run("on the NFS SR: a thin VHD", func(t *testing.T) {
		// sm FileSR.py create: the file holds only the VHD's metadata
		// (vhdutil.calcOverheadEmpty), sm_config passes base_mirror and
		// key_hash only.
		g := NewWithT(t)
		vm, vdi, _, rec := check(t, nfs)
		g.Expect(rec).To(HaveKeyWithValue("physical_utilisation", "24576"))
		g.Expect(rec).To(HaveKeyWithValue("sm_config", map[string]any{}))
		g.Expect(rec).To(HaveKeyWithValue("allowed_operations",
			[]any{"clone", "copy", "resize", "snapshot", "destroy", "forget", "update", "generate_config"}))

		// Running, the disk is attached: its device is named, and only the
		// operations that can run live remain (xapi_vdi.ml check_operation_error).
		c.must("VM.start", vm, false, false)
		vbd := c.field("VM", vm, "VBDs").([]any)[0].(string)
		g.Expect(c.field("VBD", vbd, "device")).To(Equal("xvda"))
		g.Expect(c.field("VBD", vbd, "currently_attached")).To(BeTrue())
		g.Expect(c.field("VBD", vbd, "allowed_operations")).To(ConsistOf("attach", "pause", "unpause"),
			"a system disk is not unpluggable; it is plugged already")
		g.Expect(c.field("VDI", vdi, "allowed_operations")).To(Equal([]any{"clone", "snapshot"}))
		_, f := c.do("VDI.destroy", vdi)
		g.Expect(f).To(failWith(errVDIInUse, vdi, "destroy"))
		_, f = c.do("VBD.destroy", vbd)
		g.Expect(f).To(failWith(errOperationNotAllowed,
			"VBD '"+c.field("VBD", vbd, "uuid").(string)+"' still attached to '"+c.field("VM", vm, "uuid").(string)+"'"))
		c.must("VM.hard_shutdown", vm)
		g.Expect(c.field("VBD", vbd, "device")).To(Equal("xvda"), "xapi leaves the device as it was")
		g.Expect(c.field("VDI", vdi, "allowed_operations")).To(ContainElement("destroy"))
	})
	t.Run("on the local LVM SR: a whole logical volume", func(t *testing.T) {
		// sm LVHDSR.py create: thick provisioning allocates the volume for the
		// whole disk with its metadata (lvhdutil.calcSizeVHDLV); sm_config
		// keeps the caller's and adds vdi_type.
		g := NewWithT(t)
		vm, _, _, rec := check(t, local)
		g.Expect(rec).To(HaveKeyWithValue("physical_utilisation", "10766778368"))
		g.Expect(rec).To(HaveKeyWithValue("sm_config", map[string]any{
			"vmhint": c.field("VM", vm, "uuid"), "vdi_type": "vhd"}))
		g.Expect(rec["allowed_operations"]).NotTo(ContainElement("generate_config"), "LVHDSR has no VDI_GENERATE_CONFIG")
	})
	t.Run("provision errors", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.must("VM.clone", c.vmByName("Debian Bookworm 12"), "bad-disks").(string)
		c.must("VM.remove_from_other_config", vm, "disks")
		c.must("VM.add_to_other_config", vm, "disks", `<provision><disk device="0" size="1" sr="nope"/></provision>`)
		_, f := c.do("VM.provision", vm)
		g.Expect(f).To(failWith(errInternalError, "Xapi_templates.Parse_failure"), "bootable is required")
		g.Expect(c.field("VM", vm, "is_a_template")).To(BeFalse(), "un-templated before the disks are read")

		vm = c.must("VM.clone", c.vmByName("Debian Bookworm 12"), "no-sr").(string)
		c.must("VM.remove_from_other_config", vm, "disks")
		c.must("VM.add_to_other_config", vm, "disks",
			`<provision><disk device="0" size="1" sr="nope" bootable="true"/></provision>`)
		_, f = c.do("VM.provision", vm)
		g.Expect(f).To(failWith(errUUIDInvalid, "sr", "nope"))
	})
}

// addInts adds to a wire int (a decimal string) an int or another wire int.
func addInts(a, b any) string {
	parse := func(v any) int64 {
		if i, ok := v.(int); ok {
			return int64(i)
		}
		n, _ := strconv.ParseInt(v.(string), 10, 64)
		return n
	}
	return fmtInt(parse(a) + parse(b))
}
