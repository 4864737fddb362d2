package xapisim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

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

// vdiRecord is the record VDI.create takes, with every field it requires.
func vdiRecord(sr string, size int64) map[string]any {
	return map[string]any{
		"SR": sr, "virtual_size": strconv.FormatInt(size, 10), "type": "user", "sharable": false,
		"read_only": false, "other_config": map[string]string{},
	}
}

// simSR calls the /sim/sr control and returns the SRs it reports.
func simSR(g Gomega, base, method, query string) []SRSize {
	req, err := http.NewRequest(method, base+"/sim/sr?"+query, nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	var out []SRSize
	g.Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	return out
}

// srRef is the ref of the SR named name (the first, for a local SR).
func (c *rawClient) srRef(name string) string {
	c.t.Helper()
	refs := c.must("SR.get_by_name_label", name).([]any)
	if len(refs) == 0 {
		c.t.Fatalf("no SR named %q", name)
	}
	return refs[0].(string)
}

// TestThePoolsSRs checks the pool's SRs, whose names are a contract with the
// operator's tests: the shared NFS SR is the pool's default; each host has
// its "Local storage" (lvm); the shared "ISO library" holds ISOs. Their
// allowed_operations are xapi_sr_operations.ml's, less what each SM driver
// lacks a capability for (NFSSR.py, LVHDSR.py, ISOSR.py CAPABILITIES).
func TestThePoolsSRs(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	byName := map[string][]map[string]any{}
	for _, sr := range c.records("SR") {
		byName[sr["name_label"].(string)] = append(byName[sr["name_label"].(string)], sr)
	}
	g.Expect(byName).To(HaveLen(3))
	pool := c.must("pool.get_all").([]any)[0]
	g.Expect(c.field("SR", c.must("pool.get_default_SR", pool).(string), "name_label")).To(Equal("NFS virtual disk storage"))
	all := []any{"scan", "plug", "unplug", "vdi_create", "vdi_destroy", "vdi_resize", "vdi_clone",
		"vdi_snapshot", "vdi_mirror", "vdi_enable_cbt", "vdi_disable_cbt", "vdi_data_destroy",
		"vdi_list_changed_blocks", "vdi_set_on_boot", "update", "pbd_create", "pbd_destroy"}
	for name, want := range map[string]map[string]any{
		"NFS virtual disk storage": {"type": "nfs", "shared": true, "allowed_operations": all},
		"Local storage":            {"type": "lvm", "shared": false, "content_type": "user", "allowed_operations": all},
		"ISO library": {"type": "iso", "shared": true, "content_type": "iso", "allowed_operations": []any{
			"scan", "plug", "unplug", "vdi_create", "vdi_destroy", "vdi_clone", "pbd_create", "pbd_destroy"}},
	} {
		g.Expect(byName[name]).NotTo(BeEmpty(), name)
		for _, sr := range byName[name] {
			for k, v := range want {
				g.Expect(sr).To(HaveKeyWithValue(k, v), "%s %s", name, k)
			}
		}
	}
	g.Expect(byName["Local storage"]).To(HaveLen(2), "one per host")
	iso := byName["ISO library"][0]
	g.Expect(iso["VDIs"]).To(BeEmpty())
	g.Expect(iso["virtual_allocation"]).To(Equal(iso["physical_size"]), "ISOSR.py scan")
	g.Expect(simSR(g, s.URL(), http.MethodGet, "")).To(HaveLen(4))
}

// TestVDICreateIsWhatXapiCreates checks VDI.create field by field
// (xapi_vdi.ml create, then what the SM driver introduces): the size
// rounded up to whole 2 MiB VHD blocks, at least 2 MiB
// (vhdutil.validate_and_round_vhd_size); the caller's name, description,
// type, sharable, read_only, other_config, xenstore_data and tags; SM's
// location, sm_config and space used; the SR's virtual_allocation and
// physical_utilisation moved by as much.
func TestVDICreateIsWhatXapiCreates(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	for _, tc := range []struct {
		sr               string
		size, virtual    int64
		physical         string
		smConfig, wantSM map[string]any
	}{
		{srNFS, 1, 2 * mib, "4096", map[string]any{"vmhint": "x", "key_hash": "h"}, map[string]any{"key_hash": "h"}},
		{srNFS, 3*mib + 1, 4 * mib, "4096", nil, map[string]any{}},
		{srLocal, 10 * gib, 10 * gib, "10766778368", map[string]any{"vmhint": "x"},
			map[string]any{"vmhint": "x", "vdi_type": "vhd"}},
	} {
		t.Run(tc.sr+" "+strconv.FormatInt(tc.size, 10), func(t *testing.T) {
			g := NewWithT(t)
			sr := c.srRef(tc.sr)
			before := c.must("SR.get_record", sr).(map[string]any)
			rec := vdiRecord(sr, tc.size)
			rec["name_label"], rec["name_description"], rec["type"] = "data", "a data disk", "user"
			rec["sharable"], rec["read_only"] = true, false
			rec["other_config"] = map[string]string{"k": "v"}
			rec["xenstore_data"] = map[string]string{"vm-data/x": "1"}
			rec["tags"] = []string{"t"}
			if tc.smConfig != nil {
				smc := map[string]string{}
				for k, v := range tc.smConfig {
					smc[k] = v.(string)
				}
				rec["sm_config"] = smc
			}
			vdi := c.must("VDI.create", rec).(string)
			got := c.must("VDI.get_record", vdi).(map[string]any)
			for k, v := range map[string]any{
				"name_label": "data", "name_description": "a data disk", "SR": sr, "type": "user",
				"virtual_size": fmtInt(tc.virtual), "physical_utilisation": tc.physical, "sharable": true,
				"read_only": false, "other_config": map[string]any{"k": "v"},
				"xenstore_data": map[string]any{"vm-data/x": "1"}, "tags": []any{"t"}, "sm_config": tc.wantSM,
				"location": got["uuid"], "managed": true, "missing": false, "VBDs": []any{},
				"is_a_snapshot": false, "on_boot": "persist", "storage_lock": false, "parent": nullRef,
			} {
				g.Expect(got).To(HaveKeyWithValue(k, v), k)
			}
			g.Expect(got["allowed_operations"]).NotTo(ContainElement("snapshot"), "a sharable disk does not snapshot")
			after := c.must("SR.get_record", sr).(map[string]any)
			g.Expect(after["virtual_allocation"]).To(Equal(addInts(before["virtual_allocation"], fmtInt(tc.virtual))))
			g.Expect(after["physical_utilisation"]).To(Equal(addInts(before["physical_utilisation"], tc.physical)))
			g.Expect(after["VDIs"]).To(ContainElement(vdi))
		})
	}
	t.Run("Async", func(t *testing.T) {
		g := NewWithT(t)
		task := c.must("Async.VDI.create", vdiRecord(c.srRef(srNFS), gib)).(string)
		g.Eventually(func() any { return c.field("task", task, "status") }, 5*time.Second).Should(Equal("success"))
	})
}

// TestVDICreateErrors checks VDI.create's refusals: the SR must exist
// (marking it reads it); the ISO library, a read-only export, cannot hold
// the new file (ISOSR.py ISOVDI.create: VDICreate, SR_BACKEND_FAILURE_78,
// after checking an sm_config path); sizes outside 0..2040 GiB are VDISize
// (79, vhdutil.validate_and_round_vhd_size); cbt_metadata disks are refused
// by xapi itself (xapi_vdi.ml create).
func TestVDICreateErrors(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	nfs, iso := c.srRef(srNFS), c.srRef(srISO)
	isoUUID := c.field("SR", iso, "uuid").(string)
	with := func(sr string, k string, v any) map[string]any {
		rec := vdiRecord(sr, gib)
		if k != "" {
			rec[k] = v
		}
		return rec
	}
	missing := vdiRecord(nfs, gib)
	delete(missing, "sharable")
	sizeMsg := "VDI Invalid size [opterr=VDI size must be between 1 MB and 2088960 MB]"
	for _, tc := range []struct {
		name string
		rec  map[string]any
		want OmegaMatcher
	}{
		{"a required field missing", missing, failWith(errInternalError, `Server_helpers.Dispatcher_FieldNotFound("sharable")`)},
		{"an unknown SR", with("OpaqueRef:nope", "", nil), failWith(errHandleInvalid, "SR", "OpaqueRef:nope")},
		{"too big", with(nfs, "virtual_size", strconv.FormatInt(2040*gib+1, 10)), failWith("SR_BACKEND_FAILURE_79", "", sizeMsg, "")},
		{"negative", with(c.srRef(srLocal), "virtual_size", "-1"), failWith("SR_BACKEND_FAILURE_79", "", sizeMsg, "")},
		{"cbt_metadata", with(nfs, "type", "cbt_metadata"), failWith(errVDIIncompatibleType, "", "cbt_metadata")},
		{"an ISO path that is not one", with(iso, "sm_config", map[string]string{"path": "../x"}),
			failWith("SR_BACKEND_FAILURE_78", "", `VDI Creation failed [opterr=Invalid path "../x"]`, "")},
		{"an ISO on the read-only library", with(iso, "sm_config", map[string]string{"path": "my.iso"}),
			failWith("SR_BACKEND_FAILURE_78", "", `VDI Creation failed [opterr=could not create file: "/run/sr-mount/`+isoUUID+`/my.iso"]`, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, f := c.do("VDI.create", tc.rec)
			g.Expect(f).To(tc.want)
		})
	}
	t.Run("an image named after its uuid", func(t *testing.T) {
		g := NewWithT(t)
		_, f := c.do("VDI.create", vdiRecord(iso, gib))
		g.Expect(f).To(failWith("SR_BACKEND_FAILURE_78"))
		g.Expect(f.Params[1]).To(MatchRegexp(`^VDI Creation failed \[opterr=could not create file: "/run/sr-mount/` +
			isoUUID + `/[0-9a-f-]{36}\.img"\]$`))
		g.Expect(c.field("SR", iso, "VDIs")).To(BeEmpty())
	})
}

// TestSRSpace checks that SR space is accounted and what a full SR
// answers. An LVM SR allocates each disk's whole volume and checks the
// volume group's free space first (LVHDSR.py _ensureSpaceAvailable:
// SRNoSpace, SR_BACKEND_FAILURE_44), for VDI.create, VM.provision and the
// disks of VM.clone. The NFS SR is thin (FileSR.py checks no space): a disk
// larger than the free space is created, and only a file system too full
// for the VHD's metadata fails (vhd-util's ENOSPC, error 28). xapi itself
// never raises SR_FULL.
func TestSRSpace(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	noSpace := failWith("SR_BACKEND_FAILURE_44", "", "There is insufficient space", "")
	local, nfs := c.srRef(srLocal), c.srRef(srNFS)
	localUUID := c.field("SR", local, "uuid").(string)

	t.Run("the control sets an SR's size", func(t *testing.T) {
		g := NewWithT(t)
		got := simSR(g, s.URL(), http.MethodPost, "name="+localUUID+"&free="+strconv.FormatInt(gib, 10))
		g.Expect(got).To(HaveLen(1))
		g.Expect(got[0].PhysicalSize - got[0].PhysicalUtilisation).To(Equal(gib))
		g.Expect(c.field("SR", local, "physical_size")).To(Equal(fmtInt(got[0].PhysicalSize)))
	})
	t.Run("LVM: a disk that does not fit", func(t *testing.T) {
		g := NewWithT(t)
		_, f := c.do("VDI.create", vdiRecord(local, gib))
		g.Expect(f).To(noSpace, "1 GiB of VHD needs more than 1 GiB of volume")
		vdi := c.must("VDI.create", vdiRecord(local, 512*mib)).(string)
		g.Expect(c.field("VDI", vdi, "physical_utilisation")).To(Equal(fmtInt(lvhdSize(512 * mib))))

		// VM.provision: the template's 10 GiB disk does not fit either; the
		// VM is un-templated, and has no disk.
		vm := c.must("VM.clone", c.vmByName("Debian Bookworm 12"), "too-big").(string)
		disks := c.must("VM.get_other_config", vm).(map[string]any)["disks"].(string)
		c.must("VM.remove_from_other_config", vm, "disks")
		c.must("VM.add_to_other_config", vm, "disks", strings.ReplaceAll(disks, `sr=""`, `sr="`+localUUID+`"`))
		_, f = c.do("VM.provision", vm)
		g.Expect(f).To(noSpace)
		g.Expect(c.field("VM", vm, "VBDs")).To(BeEmpty())
	})
	t.Run("LVM: a clone needs room for the new volume, the base copy and two journals", func(t *testing.T) {
		g := NewWithT(t)
		simSR(g, s.URL(), http.MethodPost, "name="+localUUID+"&free="+strconv.FormatInt(20*gib, 10))
		src := c.provisionOn("Debian Bookworm 12", "source", localUUID)
		free := func() int64 {
			return parseInt(c.field("SR", local, "physical_size")) - parseInt(c.field("SR", local, "physical_utilisation"))
		}
		need := lvhdSize(10*gib) + 8*mib + 2*4*mib
		simSR(g, s.URL(), http.MethodPost, "name="+localUUID+"&free="+strconv.FormatInt(need-1, 10))
		vdis := len(c.must("VDI.get_all").([]any))
		_, f := c.do("VM.clone", src, "no-room")
		g.Expect(f).To(noSpace)
		g.Expect(c.must("VDI.get_all")).To(HaveLen(vdis), "no disk left behind")
		g.Expect(c.must("VM.get_by_name_label", "no-room")).To(BeEmpty())
		g.Expect(free()).To(Equal(need - 1))
		simSR(g, s.URL(), http.MethodPost, "name="+localUUID+"&free="+strconv.FormatInt(need, 10))
		c.must("VM.clone", src, "room")
		g.Expect(free()).To(Equal(need-lvhdSize(10*gib)), "the clone's volume is taken")
	})
	t.Run("NFS: thin disks fit until the metadata does not", func(t *testing.T) {
		g := NewWithT(t)
		got := simSR(g, s.URL(), http.MethodPost, "name="+url.QueryEscape(srNFS)+"&free="+strconv.FormatInt(mib, 10))
		g.Expect(got).To(HaveLen(1))
		vdi := c.must("VDI.create", vdiRecord(nfs, 100*gib)).(string)
		g.Expect(c.field("VDI", vdi, "virtual_size")).To(Equal(fmtInt(100 * gib)))
		g.Expect(parseInt(c.field("SR", nfs, "virtual_allocation"))).To(BeNumerically(">", parseInt(c.field("SR", nfs, "physical_size"))),
			"thin provisioning over-commits")
		src := c.install("Debian Bookworm 12", "thin")
		simSR(g, s.URL(), http.MethodPost, "name="+url.QueryEscape(srNFS)+"&free=1000")
		_, f := c.do("VDI.create", vdiRecord(nfs, gib))
		g.Expect(f).To(failWith("SR_BACKEND_FAILURE_78", "", "VDI Creation failed [opterr=error 28]", ""))
		_, f = c.do("VM.clone", src, "no-room")
		g.Expect(f).To(failWith("SR_BACKEND_FAILURE_81", "", "Failed to clone VDI [opterr=VDI clone failed error 28]", ""))
	})
	t.Run("bad requests", func(t *testing.T) {
		g := NewWithT(t)
		for query, status := range map[string]int{
			"name=nope&free=1": http.StatusNotFound, "free=1": http.StatusNotFound,
			"name=ISO+library": http.StatusBadRequest, "name=ISO+library&free=1&physical_size=2": http.StatusBadRequest,
			"name=ISO+library&physical_size=-1": http.StatusBadRequest,
		} {
			resp, err := http.Post(s.URL()+"/sim/sr?"+query, "", nil)
			g.Expect(err).NotTo(HaveOccurred())
			_ = resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(status), query)
		}
	})
}

// parseInt reads a wire int.
func parseInt(v any) int64 {
	n, _ := strconv.ParseInt(v.(string), 10, 64)
	return n
}

// TestVDIResize checks VDI.resize (xapi_vdi.ml resize; FileSR.py and
// LVHDSR.py resize): the new size is rounded like a new disk's and xapi
// records it; the same size changes nothing; shrinking is the SM's VDISize;
// an attached disk is VDI_IN_USE [vdi; "resize"] (a running VM's disk waits
// for the VM to halt; VDI.resize_online is removed from API 2.23 and no SM
// driver has VDI_RESIZE_ONLINE); LVM grows the volume only with room for it.
func TestVDIResize(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	shrink := failWith("SR_BACKEND_FAILURE_79", "", "VDI Invalid size [opterr=shrinking not allowed]", "")

	t.Run("on NFS", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "grow")
		vdi := c.field("VBD", c.field("VM", vm, "VBDs").([]any)[0].(string), "VDI").(string)
		sr := c.srRef(srNFS)
		before := parseInt(c.field("SR", sr, "virtual_allocation"))
		c.must("VDI.resize", vdi, 12*gib+1)
		g.Expect(c.field("VDI", vdi, "virtual_size")).To(Equal(fmtInt(12*gib + 2*mib)))
		g.Expect(parseInt(c.field("SR", sr, "virtual_allocation"))).To(Equal(before + 2*gib + 2*mib))
		c.must("VDI.resize", vdi, 12*gib+2*mib)
		_, f := c.do("VDI.resize", vdi, 11*gib)
		g.Expect(f).To(shrink)

		c.must("VM.start", vm, false, false)
		g.Expect(c.field("VDI", vdi, "allowed_operations")).NotTo(ContainElement("resize"))
		g.Expect(c.field("VDI", vdi, "allowed_operations")).NotTo(ContainElement("resize_online"))
		_, f = c.do("VDI.resize", vdi, 20*gib)
		g.Expect(f).To(failWith(errVDIInUse, vdi, "resize"))
		_, f = c.do("VDI.resize_online", vdi, 20*gib)
		g.Expect(f).To(failWith(errMessageRemoved))
		c.must("VM.suspend", vm)
		_, f = c.do("VDI.resize", vdi, 20*gib)
		g.Expect(f).To(failWith(errVDIInUse, vdi, "resize"), "a suspended VM keeps its disks attached")
		c.must("VM.hard_shutdown", vm)
		task := c.must("Async.VDI.resize", vdi, 20*gib).(string)
		g.Eventually(func() any { return c.field("task", task, "status") }, 5*time.Second).Should(Equal("success"))
		g.Expect(c.field("VDI", vdi, "virtual_size")).To(Equal(fmtInt(20 * gib)))
	})
	t.Run("on LVM", func(t *testing.T) {
		g := NewWithT(t)
		sr := c.srRef(srLocal)
		vdi := c.must("VDI.create", vdiRecord(sr, gib)).(string)
		used := parseInt(c.field("SR", sr, "physical_utilisation"))
		c.must("VDI.resize", vdi, 2*gib)
		g.Expect(c.field("VDI", vdi, "physical_utilisation")).To(Equal(fmtInt(lvhdSize(2 * gib))))
		g.Expect(parseInt(c.field("SR", sr, "physical_utilisation"))).To(Equal(used + lvhdSize(2*gib) - lvhdSize(gib)))
		_, f := c.do("VDI.resize", vdi, gib)
		g.Expect(f).To(shrink)
		simSR(g, s.URL(), http.MethodPost, "name="+c.field("SR", sr, "uuid").(string)+"&free="+strconv.FormatInt(gib, 10))
		_, f = c.do("VDI.resize", vdi, 3*gib+gib)
		g.Expect(f).To(failWith("SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""))
		g.Expect(c.field("VDI", vdi, "virtual_size")).To(Equal(fmtInt(2 * gib)))
	})
}

// TestVDIDestroy checks VDI.destroy (xapi_vdi.ml check_operation_error and
// destroy_and_data_destroy_common): VDI_IN_USE [vdi; "destroy"] while a VBD
// has the disk attached, which a suspended VM's do; otherwise the disk, its
// VBDs and its space go.
func TestVDIDestroy(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	sr := c.srRef(srNFS)
	before := c.must("SR.get_record", sr).(map[string]any)
	vm := c.install("Debian Bookworm 12", "destroy")
	vbd := c.field("VM", vm, "VBDs").([]any)[0].(string)
	vdi := c.field("VBD", vbd, "VDI").(string)
	c.putInState(vm, "Suspended")
	_, f := c.do("VDI.destroy", vdi)
	g.Expect(f).To(failWith(errVDIInUse, vdi, "destroy"))
	c.must("VM.hard_shutdown", vm)
	c.must("VDI.destroy", vdi)
	g.Expect(c.field("VM", vm, "VBDs")).To(BeEmpty(), "its VBDs go with it")
	_, f = c.do("VBD.get_record", vbd)
	g.Expect(f).To(failWith(errHandleInvalid, "VBD", vbd))
	after := c.must("SR.get_record", sr).(map[string]any)
	g.Expect(after["virtual_allocation"]).To(Equal(before["virtual_allocation"]))
	g.Expect(after["physical_utilisation"]).To(Equal(before["physical_utilisation"]))
}

// TestProvisionHonoursTheDisks checks that VM.provision makes each disk of
// other_config:disks with its size, in the SR its sr attribute names by uuid
// (xapi_templates.ml create_disk). An sr xapi cannot find, the empty one
// the shipped templates carry included, is UUID_INVALID ["sr"; value]: xe
// vm-install fills in the default SR, xapi does not.
func TestProvisionHonoursTheDisks(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	local, nfs := c.srRef(srLocal), c.srRef(srNFS)
	vm := c.must("VM.clone", c.vmByName("Debian Bookworm 12"), "two-disks").(string)
	c.must("VM.remove_from_other_config", vm, "disks")
	c.must("VM.add_to_other_config", vm, "disks", `<provision>`+
		`<disk device="0" size="5368709121" sr="`+c.field("SR", local, "uuid").(string)+`" bootable="true" type="system"/>`+
		`<disk device="1" size="1073741824" sr="`+c.field("SR", nfs, "uuid").(string)+`" bootable="false" type="user"/>`+
		`</provision>`)
	c.must("VM.provision", vm)
	got := map[string]map[string]any{}
	for _, vbd := range c.field("VM", vm, "VBDs").([]any) {
		rec := c.must("VBD.get_record", vbd).(map[string]any)
		got[rec["userdevice"].(string)] = c.must("VDI.get_record", rec["VDI"]).(map[string]any)
	}
	g.Expect(got).To(HaveLen(2))
	g.Expect(got["0"]).To(HaveKeyWithValue("SR", local))
	g.Expect(got["0"]).To(HaveKeyWithValue("virtual_size", fmtInt(5*gib+2*mib)), "rounded up to a VHD block")
	g.Expect(got["1"]).To(HaveKeyWithValue("SR", nfs))
	g.Expect(got["1"]).To(HaveKeyWithValue("virtual_size", fmtInt(gib)))
	g.Expect(got["1"]).To(HaveKeyWithValue("type", "user"))

	for _, sr := range []string{"", "nope"} {
		vm := c.must("VM.clone", c.vmByName("Debian Bookworm 12"), "sr "+sr).(string)
		c.must("VM.remove_from_other_config", vm, "disks")
		c.must("VM.add_to_other_config", vm, "disks",
			`<provision><disk device="0" size="1" sr="`+sr+`" bootable="true"/></provision>`)
		_, f := c.do("VM.provision", vm)
		g.Expect(f).To(failWith(errUUIDInvalid, "sr", sr))
	}
}
