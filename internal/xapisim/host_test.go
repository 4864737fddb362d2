package xapisim

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestHostOperations(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	hosts := c.must("host.get_all").([]any)
	h1, h2 := hosts[0].(string), hosts[1].(string)
	rec := c.must("host.get_record", h1).(map[string]any)
	g.Expect(rec).To(HaveKeyWithValue("address", "127.0.0.1"))
	g.Expect(rec).To(HaveKeyWithValue("hostname", "xcp-ng-01"))
	g.Expect(rec).To(HaveKeyWithValue("enabled", true))
	g.Expect(rec["software_version"]).To(HaveKeyWithValue("xapi", "24.11"))
	g.Expect(c.field("host", h2, "address")).To(Equal("127.0.0.2"))
	pool := c.must("pool.get_all").([]any)[0]
	g.Expect(c.must("pool.get_master", pool)).To(Equal(h1))

	vm := c.install("Debian Bookworm 12", "evacuee")
	c.must("VM.start_on", vm, h1, false, false)
	free := c.must("host.compute_free_memory", h1).(string)

	_, f := c.do("host.reboot", h1)
	g.Expect(f).To(failWith(errHostNotDisabled), "a host must be disabled before a reboot")

	c.must("host.disable", h1)
	g.Expect(c.field("host", h1, "enabled")).To(BeFalse())
	_, f = c.do("VM.start_on", c.install("Debian Bookworm 12", "refused"), h1, false, false)
	g.Expect(f).To(failWith(errHostDisabled, h1))

	c.must("host.evacuate", h1)
	g.Expect(c.field("VM", vm, "resident_on")).To(Equal(h2))
	g.Expect(c.field("VM", vm, "power_state")).To(Equal("Running"))
	g.Expect(c.must("host.compute_free_memory", h1)).NotTo(Equal(free), "the evacuated memory is free again")

	c.must("host.disable", h2)
	vm2 := c.install("Debian Bookworm 12", "stranded")
	_, f = c.do("VM.start", vm2, false, false)
	g.Expect(f).To(failWith(errNoHostsAvailable, []string{}...))
	c.must("host.reboot", h2)
	g.Expect(c.field("VM", vm, "power_state")).To(Equal("Halted"), "a host reboot stops its guests")
	g.Expect(c.field("host", h2, "enabled")).To(BeTrue(), "a rebooted host comes back enabled")

	c.must("VM.start_on", vm, h2, false, false)
	c.must("host.disable", h2)
	_, f = c.do("host.evacuate", h2)
	g.Expect(f).To(failWith(errNoHostsAvailable, vm), "h1 is disabled too: nowhere to go (xapi_host.ml names the VM)")
	c.must("host.enable", h1)
	c.must("host.enable", h2)
}

func TestGuestAgentReportsAfterBootDelay(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{BootDelay: 300 * time.Millisecond})
	c := newClient(t, s.URL()).login()
	vm := c.install("Windows Server 2022 (64-bit)", "booting")
	c.createVIF(vm, networkEth0, "0")
	_, token := c.events([]string{"vm"}, "", 0)
	c.must("VM.start", vm, false, false)
	g.Expect(c.field("VM", vm, "guest_metrics")).To(Equal(nullRef), "no agent before the boot delay")
	var gm string
	g.Eventually(func() string {
		evs, next := c.events([]string{"vm"}, token, 5)
		token = next
		for _, e := range evs {
			if e["ref"] == vm {
				gm = e["snapshot"].(map[string]any)["guest_metrics"].(string)
			}
		}
		return gm
	}, 5*time.Second).ShouldNot(Or(BeEmpty(), Equal(nullRef)), "the agent's report shows in the event stream")
	networks := c.field("VM_guest_metrics", gm, "networks").(map[string]any)
	g.Expect(networks).To(HaveKey("0/ip"))
	c.must("VM.clean_shutdown", vm)
	_, f := c.do("VM_guest_metrics.get_record", gm)
	g.Expect(f).To(failWith(errHandleInvalid, "VM_guest_metrics", gm), "a halted VM has no guest metrics")
}

func TestDisksOutliveTheVM(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "disks")
	vbd := c.field("VM", vm, "VBDs").([]any)[0]
	vdi := c.field("VBD", vbd.(string), "VDI").(string)
	c.must("VM.start", vm, false, false)
	_, f := c.do("VDI.destroy", vdi)
	g.Expect(f).To(failWith(errVDIInUse, vdi, "destroy"))
	c.must("VM.hard_shutdown", vm)
	c.must("VM.destroy", vm)
	g.Expect(c.field("VDI", vdi, "VBDs")).To(BeEmpty())
	c.must("VDI.destroy", vdi)
	_, f = c.do("VDI.get_record", vdi)
	g.Expect(f).To(failWith(errHandleInvalid, "VDI", vdi))
	sr := c.must("pool.get_default_SR", c.must("pool.get_all").([]any)[0]).(string)
	g.Expect(c.field("SR", sr, "VDIs")).NotTo(ContainElement(vdi))
	g.Expect(fmt.Sprint(c.field("SR", sr, "virtual_allocation"))).To(Equal("0"))
}

// TestDisksOnALocalSRTieAVMToItsHost: a host can start a VM only if it
// reaches every SR holding the VM's disks through a plugged PBD
// (xapi_vm_helpers.ml assert_can_see_SRs: VM_REQUIRES_SR [vm; sr]); the
// automatic choice skips the others (NO_HOSTS_AVAILABLE when none is left),
// and an evacuation cannot move such a VM (xapi_host.ml
// compute_evacuation_plan_no_wlb).
func TestDisksOnALocalSRTieAVMToItsHost(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	hosts := c.must("host.get_all").([]any)
	h1, h2 := hosts[0].(string), hosts[1].(string)
	local := c.field("host", h1, "suspend_image_sr").(string)
	g.Expect(c.field("SR", local, "shared")).To(BeFalse())
	vm := c.provisionOn("Debian Bookworm 12", "local-disk", c.field("SR", local, "uuid").(string))

	_, f := c.do("VM.start_on", vm, h2, false, false)
	g.Expect(f).To(failWith(errVMRequiresSR, vm, local))
	for range 3 {
		c.must("VM.start", vm, false, false)
		g.Expect(c.field("VM", vm, "resident_on")).To(Equal(h1), "only h1 reaches the disk")
		c.must("VM.hard_shutdown", vm)
	}
	c.must("VM.start", vm, false, false)
	c.must("host.disable", h1)
	_, f = c.do("host.evacuate", h1)
	g.Expect(f).To(failWith(errVMRequiresSR, vm, local))
	c.must("VM.hard_shutdown", vm)
	_, f = c.do("VM.start", vm, false, false)
	g.Expect(f).To(failWith(errNoHostsAvailable), "h2 cannot reach the disk and h1 is disabled")
}
