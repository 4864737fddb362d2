package xapisim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// putInState drives a freshly installed VM into state through the API.
func (c *rawClient) putInState(vm, state string) {
	c.t.Helper()
	switch state {
	case "Halted":
	case "Running":
		c.must("VM.start", vm, false, false)
	case "Paused":
		c.must("VM.start", vm, true, false)
	case "Suspended":
		c.must("VM.start", vm, false, false)
		c.must("VM.suspend", vm)
	default:
		c.t.Fatalf("unknown state %s", state)
	}
	if got := c.field("VM", vm, "power_state"); got != state {
		c.t.Fatalf("VM is %v, wanted %s", got, state)
	}
}

// TestPowerStateMatrix runs every lifecycle operation from every power state
// and checks the result state or xapi's VM_BAD_POWER_STATE with its params.
func TestPowerStateMatrix(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	states := []string{"Halted", "Running", "Paused", "Suspended"}
	ops := []struct {
		method  string
		args    []any
		from    []string // in xapi's order
		result  string
		destroy bool
	}{
		{"VM.start", []any{false, false}, []string{"Halted"}, "Running", false},
		{"VM.start", []any{true, false}, []string{"Halted"}, "Paused", false},
		{"VM.pause", nil, []string{"Running"}, "Paused", false},
		{"VM.unpause", nil, []string{"Paused"}, "Running", false},
		{"VM.suspend", nil, []string{"Running"}, "Suspended", false},
		{"VM.resume", []any{false, false}, []string{"Suspended"}, "Running", false},
		{"VM.resume", []any{true, false}, []string{"Suspended"}, "Paused", false},
		{"VM.clean_shutdown", nil, []string{"Running"}, "Halted", false},
		{"VM.hard_shutdown", nil, []string{"Paused", "Suspended", "Running"}, "Halted", false},
		{"VM.shutdown", nil, []string{"Paused", "Suspended", "Running"}, "Halted", false},
		{"VM.clean_reboot", nil, []string{"Running"}, "Running", false},
		{"VM.hard_reboot", nil, []string{"Paused", "Running"}, "Running", false},
		{"VM.destroy", nil, []string{"Halted", "Suspended"}, "", true},
		{"VM.clone", []any{"clone"}, []string{"Halted"}, "Halted", false},
		{"VM.provision", nil, []string{"Halted"}, "", false},
	}
	for _, op := range ops {
		for _, from := range states {
			name := fmt.Sprintf("%s%v from %s", op.method, op.args, from)
			t.Run(name, func(t *testing.T) {
				g := NewWithT(t)
				vm := c.install("Debian Bookworm 12", name)
				c.putInState(vm, from)
				res, f := c.do(op.method, append([]any{vm}, op.args...)...)
				allowed := false
				for _, a := range op.from {
					allowed = allowed || a == from
				}
				if !allowed {
					g.Expect(f).To(failWith(errVMBadPowerState, vm,
						strings.ToLower(strings.Join(op.from, ", ")), strings.ToLower(from)))
					g.Expect(c.field("VM", vm, "power_state")).To(Equal(from), "a refused operation changes nothing")
					return
				}
				if op.method == "VM.provision" {
					// Allowed from Halted, but the VM is no longer a template.
					g.Expect(f).To(failWith(errProvisionOnlyOnTemplate))
					return
				}
				g.Expect(f).NotTo(HaveOccurred())
				switch {
				case op.destroy:
					_, f := c.do("VM.get_record", vm)
					g.Expect(f).To(failWith(errHandleInvalid, "VM", vm))
				case op.method == "VM.clone":
					g.Expect(c.field("VM", res.(string), "power_state")).To(Equal(op.result))
				default:
					g.Expect(c.field("VM", vm, "power_state")).To(Equal(op.result))
				}
			})
		}
	}
}

func TestRunningVMFacts(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "facts")
	c.createVIF(vm, networkEth0, "0")
	c.must("VM.start", vm, false, false)
	rec := c.must("VM.get_record", vm).(map[string]any)
	host := rec["resident_on"].(string)
	g.Expect(host).To(HavePrefix("OpaqueRef:"))
	g.Expect(rec["domid"]).NotTo(Equal("-1"))
	g.Expect(c.field("host", host, "resident_VMs")).To(ContainElement(vm))
	gm := rec["guest_metrics"].(string)
	g.Expect(gm).NotTo(Equal(nullRef), "with no boot delay the guest agent reports at once")
	gmr := c.must("VM_guest_metrics.get_record", gm).(map[string]any)
	g.Expect(gmr["PV_drivers_detected"]).To(BeTrue())
	g.Expect(gmr["networks"]).To(HaveKeyWithValue("0/ip", MatchRegexp(`^10\.\d+\.\d+\.\d+$`)))

	c.must("VM.hard_shutdown", vm)
	rec = c.must("VM.get_record", vm).(map[string]any)
	g.Expect(rec["resident_on"]).To(Equal(nullRef))
	g.Expect(rec["guest_metrics"]).To(Equal(nullRef))
	g.Expect(rec["domid"]).To(Equal("-1"))
	g.Expect(c.field("host", host, "resident_VMs")).NotTo(ContainElement(vm))
}

func TestCheckOrder(t *testing.T) {
	s := newSim(t, Config{OpDurations: map[string]time.Duration{"start": 300 * time.Millisecond}})
	c := newClient(t, s.URL()).login()

	t.Run("blocked operations come before the power state", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "blocked")
		c.putInState(vm, "Running")
		c.must("VM.add_to_blocked_operations", vm, "start", "blocked by test")
		_, f := c.do("VM.start", vm, false, false)
		g.Expect(f).To(failWith(errOperationBlocked, vm, "blocked by test"))
	})
	t.Run("the power state comes before the template check", func(t *testing.T) {
		g := NewWithT(t)
		tmpl := c.vmByName("Debian Bookworm 12")
		_, f := c.do("VM.start", tmpl, false, false)
		g.Expect(f).To(failWith(errVMIsTemplate, tmpl, "start"), "a Halted template fails the template check")
		_, f = c.do("VM.pause", tmpl)
		g.Expect(f).To(failWith(errVMBadPowerState, tmpl, "running", "halted"))
	})
	t.Run("a conflicting call fails while an operation runs", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "busy")
		task := c.must("Async.VM.start", vm, false, false).(string)
		g.Eventually(func() map[string]any {
			return c.field("VM", vm, "current_operations").(map[string]any)
		}).Should(HaveKeyWithValue(task, "start"))
		_, f := c.do("VM.destroy", vm)
		g.Expect(f).To(failWith(errOtherOperationInProgress, "VM", vm, "start", task))
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("success"))
		g.Expect(c.field("VM", vm, "current_operations")).To(BeEmpty())
	})
	t.Run("the default templates cannot be destroyed", func(t *testing.T) {
		g := NewWithT(t)
		tmpl := c.vmByName("Rocky Linux 9")
		_, f := c.do("VM.destroy", tmpl)
		g.Expect(f).To(failWith(errVMIsTemplate, tmpl, "destroy"))
	})
	t.Run("a guest without PV drivers cannot shut down cleanly or suspend", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Other install media", "no-pv")
		c.putInState(vm, "Running")
		g.Expect(c.field("VM", vm, "guest_metrics")).To(Equal(nullRef))
		_, f := c.do("VM.clean_shutdown", vm)
		g.Expect(f).To(failWith(errVMLacksFeature, vm))
		_, f = c.do("VM.suspend", vm)
		g.Expect(f).To(failWith(errVMLacksFeature, vm))
		c.must("VM.hard_shutdown", vm)
	})
	t.Run("control domains cannot be shut down", func(t *testing.T) {
		g := NewWithT(t)
		var dom0 string
		for ref, rec := range c.must("VM.get_all_records").(map[string]any) {
			if rec.(map[string]any)["is_control_domain"] == true {
				dom0 = ref
			}
		}
		_, f := c.do("VM.hard_shutdown", dom0)
		g.Expect(f).To(failWith(errOperationNotAllowed, "This operation is not allowed on a control domain"))
	})
}

func TestTemplateAndProvision(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	tmpl := c.vmByName("Windows Server 2022 (64-bit)")
	vdisBefore := len(c.must("VDI.get_all").([]any))

	vm := c.must("VM.clone", tmpl, "win-1").(string)
	rec := c.must("VM.get_record", vm).(map[string]any)
	g.Expect(rec["is_a_template"]).To(BeTrue(), "a clone of a template is a template")
	g.Expect(rec["is_default_template"]).To(BeFalse())
	oc := rec["other_config"].(map[string]any)
	g.Expect(oc).NotTo(HaveKey("default_template"))
	g.Expect(oc).To(HaveKeyWithValue("base_template_name", "Windows Server 2022 (64-bit)"))
	g.Expect(oc).To(HaveKey("mac_seed"))
	g.Expect(oc["disks"]).To(ContainSubstring(`sr=""`))
	_, f := c.do("VM.start", vm, false, false)
	g.Expect(f).To(failWith(errVMIsTemplate, vm, "start"))

	By := "provision with the template's sr=\"\" fails, after un-templating the VM as xapi does"
	_, f = c.do("VM.provision", vm)
	g.Expect(f).To(failWith(errUUIDInvalid, "sr", ""), By)
	g.Expect(c.field("VM", vm, "is_a_template")).To(BeFalse(), By)
	g.Expect(c.field("VM", vm, "VBDs")).To(BeEmpty())

	vm = c.install("Windows Server 2022 (64-bit)", "win-2")
	rec = c.must("VM.get_record", vm).(map[string]any)
	g.Expect(rec["is_a_template"]).To(BeFalse())
	g.Expect(rec["other_config"]).NotTo(HaveKey("disks"))
	vbds := rec["VBDs"].([]any)
	g.Expect(vbds).To(HaveLen(1))
	vbd := c.must("VBD.get_record", vbds[0]).(map[string]any)
	g.Expect(vbd).To(HaveKeyWithValue("userdevice", "0"))
	g.Expect(vbd).To(HaveKeyWithValue("mode", "RW"))
	g.Expect(vbd).To(HaveKeyWithValue("type", "Disk"))
	vdi := c.must("VDI.get_record", vbd["VDI"]).(map[string]any)
	g.Expect(vdi).To(HaveKeyWithValue("virtual_size", fmt.Sprint(32*gib)))
	g.Expect(vdi).To(HaveKeyWithValue("name_description", "Created by template provisioner"))

	c.must("VM.destroy", vm)
	g.Expect(c.must("VDI.get_all")).To(HaveLen(vdisBefore+1), "destroy leaves the VDIs")
	_, f = c.do("VBD.get_record", vbds[0])
	g.Expect(f).To(failWith(errHandleInvalid, "VBD", vbds[0].(string)))
}

func TestStartNeedsFreeMemory(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{HostMemory: 6*gib + 512*mib}) // 4 GiB dom0, 512 MiB overhead, 2 GiB for guests
	c := newClient(t, s.URL()).login()
	a := c.install("Debian Bookworm 12", "a")
	b := c.install("Debian Bookworm 12", "b")
	big := c.install("Windows 10 (64-bit)", "big")
	c.must("VM.start", a, false, false)
	_, f := c.do("VM.start", big, false, false)
	g.Expect(f).To(failWith(errHostNotEnoughFreeMemory, fmt.Sprint(2*gib), fmt.Sprint(1*gib)))
	c.must("VM.start", b, false, false)
	c.must("VM.hard_shutdown", a)
	c.must("VM.hard_shutdown", b)
	c.must("VM.start", big, false, false)
}

func TestSetters(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "setters")
	c.must("VM.set_memory_limits", vm, 512*mib, 2*gib, 2*gib, 2*gib)
	g.Expect(c.field("VM", vm, "memory_static_max")).To(Equal(fmt.Sprint(2 * gib)))
	_, f := c.do("VM.set_memory_limits", vm, 4*gib, 2*gib, 2*gib, 2*gib)
	g.Expect(f).To(failWith(errMemoryConstraintOrder))
	c.must("VM.set_VCPUs_max", vm, int64(4))
	c.must("VM.set_VCPUs_at_startup", vm, int64(4))
	_, f = c.do("VM.set_VCPUs_at_startup", vm, int64(5))
	g.Expect(f).To(failWith(errInvalidValue, vcpuConstraint, "5"))
	c.must("VM.start", vm, false, false)
	_, f = c.do("VM.set_VCPUs_max", vm, int64(8))
	g.Expect(f).To(failWith(errVMBadPowerState, vm, "halted", "running"))
	c.must("VM.set_name_label", vm, "renamed")
	c.must("VM.set_affinity", vm, c.must("host.get_all").([]any)[0])
	g.Expect(c.field("VM", vm, "name_label")).To(Equal("renamed"))
}

func TestConcurrencyRules(t *testing.T) {
	s := newSim(t, Config{OpDuration: 400 * time.Millisecond})
	c := newClient(t, s.URL()).login()
	pending := func(g Gomega, vm, op string) string {
		task := c.must("Async."+op, vm).(string)
		g.Eventually(func() map[string]any {
			return c.field("VM", vm, "current_operations").(map[string]any)
		}).Should(HaveKey(task))
		return task
	}

	t.Run("clones of one template run side by side", func(t *testing.T) {
		g := NewWithT(t)
		tmpl := c.must("VM.clone", c.vmByName("CentOS Stream 9"), "my-template").(string)
		first := c.must("Async.VM.clone", tmpl, "side-1").(string)
		g.Eventually(func() map[string]any { return c.field("VM", tmpl, "current_operations").(map[string]any) }).Should(HaveKey(first))
		_, f := c.do("VM.provision", tmpl)
		g.Expect(f).To(failWith(errOtherOperationInProgress, "VM", tmpl, "clone", first), "provision does not run beside a clone")
		_, f = c.do("VM.clone", tmpl, "side-2")
		g.Expect(f).NotTo(HaveOccurred())
	})
	t.Run("a hard shutdown interrupts a clean shutdown", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "interrupted")
		c.putInState(vm, "Running")
		clean := pending(g, vm, "VM.clean_shutdown")
		_, f := c.do("VM.clean_reboot", vm)
		g.Expect(f).To(failWith(errOtherOperationInProgress, "VM", vm, "clean_shutdown", clean))
		c.must("VM.hard_shutdown", vm)
		g.Expect(c.field("VM", vm, "power_state")).To(Equal("Halted"))
		g.Eventually(func() any { return c.field("task", clean, "status") }).Should(Equal("cancelled"))
	})
	t.Run("a second hard shutdown is refused", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "hard-twice")
		c.putInState(vm, "Running")
		hard := pending(g, vm, "VM.hard_shutdown")
		_, f := c.do("VM.hard_shutdown", vm)
		g.Expect(f).To(failWith(errOtherOperationInProgress, "VM", vm, "hard_shutdown", hard))
	})
	t.Run("an HVM guest needs its agent for a clean shutdown, a PV guest does not", func(t *testing.T) {
		g := NewWithT(t)
		s.SetRuntime(RuntimeConfig{BootDelay: Duration(time.Hour)})
		defer s.SetRuntime(RuntimeConfig{OpDuration: Duration(400 * time.Millisecond)})
		win := c.install("Windows 10 (64-bit)", "booting-hvm")
		lin := c.install("Debian Bookworm 12", "booting-pv")
		c.must("VM.start", win, false, false)
		c.must("VM.start", lin, false, false)
		_, f := c.do("VM.clean_shutdown", win)
		g.Expect(f).To(failWith(errVMLacksFeature, win), "the Windows agent has not reported yet")
		c.must("VM.clean_shutdown", lin)
		c.must("VM.hard_shutdown", win)
	})
}

// TestCloneIsWhatXapiCopies checks a clone field by field against
// xapi_vm_clone.ml copy_vm_record (XENAPI.md §7.4): the fields it copies,
// those it resets, other_config with a new mac_seed and base_template_name
// (kept if present), copied metrics; the disks cloned with their metadata
// (xapi_vdi.ml snapshot_and_clone), the VBDs copied (xapi_vbd_helpers.ml
// copy), the VIFs re-created with MACs derived from the new mac_seed
// (xapi_vif_helpers.ml create, gen_mac).
func TestCloneIsWhatXapiCopies(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	tmpl := c.vmByName("Debian Bookworm 12")
	tmplRec := c.must("VM.get_record", tmpl).(map[string]any)
	g.Expect(tmplRec["other_config"]).To(HaveKey("mac_seed"), "VM.create gives every VM a mac_seed")
	// xapi_vm.ml create: the metrics of a VM that never ran measure nothing.
	tmplMetrics := c.must("VM_metrics.get_record", tmplRec["metrics"]).(map[string]any)
	g.Expect(tmplMetrics).To(HaveKeyWithValue("memory_actual", "0"))
	g.Expect(tmplMetrics).To(HaveKeyWithValue("VCPUs_number", "0"))
	g.Expect(tmplMetrics).To(HaveKeyWithValue("install_time", xmlDate("19700101T00:00:00Z")))
	g.Expect(tmplMetrics).To(HaveKeyWithValue("current_domain_type", "unspecified"))

	src := c.install("Debian Bookworm 12", "source")
	c.createVIF(src, networkEth1, "0")
	c.must("VM.set_start_delay", src, 7)
	c.must("VM.set_tags", src, []string{"kept"})
	c.must("VM.set_name_description", src, "copied")
	vdi := c.field("VBD", c.field("VM", src, "VBDs").([]any)[0].(string), "VDI").(string)
	c.must("VDI.add_to_other_config", vdi, "k", "v")
	srcRec := c.must("VM.get_record", src).(map[string]any)
	g.Expect(srcRec["other_config"]).To(HaveKeyWithValue("base_template_name", "Debian Bookworm 12"))
	g.Expect(srcRec["is_a_template"]).To(BeFalse())

	clone := c.must("VM.clone", src, "clone").(string)
	rec := c.must("VM.get_record", clone).(map[string]any)
	for _, f := range []string{"name_description", "memory_static_max", "VCPUs_max", "platform",
		"PV_bootloader", "tags", "recommendations", "domain_type", "actions_after_crash", "user_version"} {
		g.Expect(rec[f]).To(Equal(srcRec[f]), "copied: %s", f)
	}
	g.Expect(rec).To(HaveKeyWithValue("name_label", "clone"))
	g.Expect(rec).To(HaveKeyWithValue("start_delay", "0"), "reset: start_delay")
	g.Expect(rec).To(HaveKeyWithValue("is_a_template", false))
	g.Expect(rec).To(HaveKeyWithValue("power_state", "Halted"))
	g.Expect(rec).To(HaveKeyWithValue("domid", "-1"))
	g.Expect(rec).To(HaveKeyWithValue("resident_on", nullRef))
	g.Expect(rec).To(HaveKeyWithValue("suspend_VDI", nullRef))
	g.Expect(rec).To(HaveKeyWithValue("guest_metrics", nullRef))
	oc := rec["other_config"].(map[string]any)
	g.Expect(oc["mac_seed"]).NotTo(Equal(srcRec["other_config"].(map[string]any)["mac_seed"]), "a new mac_seed")
	g.Expect(oc).To(HaveKeyWithValue("base_template_name", "Debian Bookworm 12"), "kept, not overwritten")
	g.Expect(oc).NotTo(HaveKey("default_template"))

	metrics := c.must("VM_metrics.get_record", rec["metrics"]).(map[string]any)
	srcMetrics := c.must("VM_metrics.get_record", srcRec["metrics"]).(map[string]any)
	g.Expect(rec["metrics"]).NotTo(Equal(srcRec["metrics"]))
	g.Expect(metrics["install_time"]).To(Equal(srcMetrics["install_time"]), "the metrics are copied")
	g.Expect(srcMetrics["install_time"]).NotTo(Equal(xmlDate("19700101T00:00:00Z")),
		"VM.provision un-templated the source: its install time")

	vbds := rec["VBDs"].([]any)
	g.Expect(vbds).To(HaveLen(1))
	vbd := c.must("VBD.get_record", vbds[0]).(map[string]any)
	g.Expect(vbd).To(HaveKeyWithValue("userdevice", "0"))
	g.Expect(vbd).To(HaveKeyWithValue("other_config", map[string]any{"owner": ""}))
	cloned := c.must("VDI.get_record", vbd["VDI"]).(map[string]any)
	orig := c.must("VDI.get_record", vdi).(map[string]any)
	g.Expect(vbd["VDI"]).NotTo(Equal(vdi), "the disk is cloned")
	for _, f := range []string{"name_label", "name_description", "type", "sharable", "other_config", "on_boot",
		"virtual_size", "SR"} {
		g.Expect(cloned[f]).To(Equal(orig[f]), "VDI %s", f)
	}
	g.Expect(cloned["location"]).To(Equal(cloned["uuid"]))

	vifs := rec["VIFs"].([]any)
	g.Expect(vifs).To(HaveLen(1))
	vif := c.must("VIF.get_record", vifs[0]).(map[string]any)
	g.Expect(vif).To(HaveKeyWithValue("MAC", genMAC(0, oc["mac_seed"].(string))))
	g.Expect(vif).To(HaveKeyWithValue("network", c.refByName("network", networkEth1)))
	g.Expect(vif).To(HaveKeyWithValue("MAC_autogenerated", true))
	g.Expect(vif["MAC"]).To(MatchRegexp(`^[0-9a-f][26ae]:`), "locally administered, unicast")
}

// TestGenMAC pins xapi_vif_helpers.ml gen_mac: MD5 applied 2×device+1 times
// to the seed, bytes 0-3 of that and 1-2 of its MD5, locally administered
// and unicast (values computed independently with Python's hashlib).
func TestGenMAC(t *testing.T) {
	g := NewWithT(t)
	const seed = "f7d6c1e4-2d6e-4b4e-9f3f-1c2b3a4d5e6f"
	g.Expect(genMAC(0, seed)).To(Equal("9a:0d:57:5c:06:15"))
	g.Expect(genMAC(1, seed)).To(Equal("76:dd:8b:fb:73:00"))
}

// TestControlDomainIsWhatXapiCreates checks dom0 against create_misc.ml
// create_domain_zero_record: resident on and affine to its host, domid 0,
// destroyed (not restarted) on reboot and crash, no mac_seed.
func TestControlDomainIsWhatXapiCreates(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	host := c.must("host.get_all").([]any)[0].(string)
	dom0 := c.field("host", host, "control_domain").(string)
	rec := c.must("VM.get_record", dom0).(map[string]any)
	g.Expect(rec).To(HaveKeyWithValue("is_control_domain", true))
	g.Expect(rec).To(HaveKeyWithValue("resident_on", host))
	g.Expect(rec).To(HaveKeyWithValue("affinity", host))
	g.Expect(rec).To(HaveKeyWithValue("domid", "0"))
	g.Expect(rec).To(HaveKeyWithValue("domarch", "x64"))
	g.Expect(rec).To(HaveKeyWithValue("actions_after_reboot", "destroy"))
	g.Expect(rec).To(HaveKeyWithValue("actions_after_crash", "destroy"))
	g.Expect(rec).To(HaveKeyWithValue("actions_after_softreboot", "soft_reboot"))
	g.Expect(rec).To(HaveKeyWithValue("power_state", "Running"))
	g.Expect(rec).To(HaveKeyWithValue("other_config", map[string]any{}))
	g.Expect(c.field("host", host, "resident_VMs")).To(ContainElement(dom0))
	metrics := c.must("VM_metrics.get_record", rec["metrics"]).(map[string]any)
	g.Expect(metrics).To(HaveKeyWithValue("current_domain_type", "pv"))
	g.Expect(metrics).To(HaveKeyWithValue("VCPUs_number", rec["VCPUs_at_startup"]))
}
