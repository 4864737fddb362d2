package xapisim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// networksOf is what a VM's guest agent reports in
// VM_guest_metrics.networks, empty without a guest agent.
func (c *rawClient) networksOf(vm string) map[string]any {
	c.t.Helper()
	gm := c.field("VM", vm, "guest_metrics").(string)
	if gm == nullRef {
		return map[string]any{}
	}
	return c.field("VM_guest_metrics", gm, "networks").(map[string]any)
}

// simGuest calls the /sim/guest control.
func simGuest(g Gomega, base, method string, query url.Values) (GuestMode, int) {
	req, err := http.NewRequest(method, base+"/sim/guest?"+query.Encode(), nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	var out GuestMode
	if resp.StatusCode == http.StatusOK {
		g.Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	}
	return out, resp.StatusCode
}

const (
	realIPv4      = `^10\.\d+\.\d+\.\d+$`
	linkLocalIPv4 = `^169\.254\.\d+\.\d+$`
)

// TestGuestReportsItsAttachedVIFs checks VM_guest_metrics.networks
// (xapi_guest_agent.ml keys "<device>/ip", "<device>/ipv4/<n>",
// "<device>/ipv6/<n>"): addresses for the VIFs that exist, are attached and
// are on a network; a VIF plugged while the VM runs gets one, an unplugged
// or destroyed one loses it, a moved one gets a new one; a VIF keeps its
// address across reboots.
func TestGuestReportsItsAttachedVIFs(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "addresses")
	c.createVIF(vm, networkEth0, "0")
	moved := c.createVIF(vm, networkEth1, "1")
	c.must("VIF.move", moved, "OpaqueRef:gone") // on no network
	// xapi_vm_helpers.ml assert_can_see_networks reads every VIF's network.
	_, f := c.do("VM.start", vm, false, false)
	g.Expect(f).To(failWith(errNoHostsAvailable), "no host can see a network that is gone")
	_, f = c.do("VM.start_on", vm, c.must("host.get_all").([]any)[0], false, false)
	g.Expect(f).To(failWith(errHandleInvalid, "network", "OpaqueRef:gone"))
	c.must("VIF.move", moved, c.refByName("network", networkEth1))
	c.must("VM.start", vm, false, false)
	nets := c.networksOf(vm)
	g.Expect(nets).To(HaveKeyWithValue("0/ip", MatchRegexp(realIPv4)))
	g.Expect(nets).To(HaveKeyWithValue("0/ipv4/0", nets["0/ip"]))
	g.Expect(nets).To(HaveKeyWithValue("0/ipv6/0", HavePrefix("fd00::")))
	g.Expect(nets).To(HaveKeyWithValue("0/ipv6/1", HavePrefix("fe80::")))
	g.Expect(nets).To(HaveKeyWithValue("1/ip", And(MatchRegexp(realIPv4), Not(Equal(nets["0/ip"])))))
	g.Expect(nets).To(HaveLen(8))
	first := nets["0/ip"]

	added := c.createVIF(vm, networkVLAN100, "2")
	g.Expect(c.networksOf(vm)).NotTo(HaveKey("2/ip"), "created detached")
	c.must("VIF.plug", added)
	g.Expect(c.networksOf(vm)).To(HaveKeyWithValue("2/ip", MatchRegexp(realIPv4)))
	c.must("VIF.unplug", added)
	g.Expect(c.networksOf(vm)).NotTo(HaveKey("2/ip"), "unplugged, the address is gone")
	c.must("VIF.destroy", added)

	vif0 := c.field("VM", vm, "VIFs").([]any)
	for _, v := range vif0 {
		if c.field("VIF", v.(string), "device") == "0" {
			c.must("VIF.move", v, c.refByName("network", networkEth1))
		}
	}
	g.Expect(c.networksOf(vm)).To(HaveKeyWithValue("0/ip", And(MatchRegexp(realIPv4), Not(Equal(first)))),
		"a new address on the new network")
	second := c.networksOf(vm)["0/ip"]
	c.must("VM.clean_reboot", vm)
	g.Expect(c.networksOf(vm)).To(HaveKeyWithValue("0/ip", second), "the lease follows the VIF")
}

// TestHotpluggedVIFGetsItsAddressAfterADelay: a guest takes as long to bring
// a plugged interface up as to boot (the boot delay), and its agent reports
// the address then.
func TestHotpluggedVIFGetsItsAddressAfterADelay(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{BootDelay: 300 * time.Millisecond})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "hotplug")
	c.must("VM.start", vm, false, false)
	g.Eventually(func() any { return c.field("VM", vm, "guest_metrics") }, 5*time.Second).ShouldNot(Equal(nullRef))
	vif := c.createVIF(vm, networkEth0, "0")
	c.must("VIF.plug", vif)
	plugged := time.Now()
	g.Expect(c.networksOf(vm)).NotTo(HaveKey("0/ip"))
	g.Eventually(func() map[string]any { return c.networksOf(vm) }, 5*time.Second).Should(HaveKey("0/ip"))
	g.Expect(time.Since(plugged)).To(BeNumerically(">=", 250*time.Millisecond))
}

// TestGuestModes checks the /sim/guest control: a guest that reports a
// link-local address before its real one, one whose address comes late,
// one that reports none; set before the VM starts or while it runs.
func TestGuestModes(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	const d = 400 * time.Millisecond
	install := func(name string) string {
		vm := c.install("Debian Bookworm 12", name)
		c.createVIF(vm, networkEth0, "0")
		return vm
	}

	t.Run("link-local first", func(t *testing.T) {
		g := NewWithT(t)
		vm := install("linklocal")
		got, code := simGuest(g, s.URL(), http.MethodPost, url.Values{"vm": {"linklocal"}, "mode": {"linklocal"},
			"duration": {d.String()}})
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(got).To(Equal(GuestMode{VM: c.field("VM", vm, "uuid").(string), Mode: "linklocal", Duration: Duration(d)}))
		c.must("VM.start", vm, false, false)
		nets := c.networksOf(vm)
		g.Expect(nets).To(HaveKeyWithValue("0/ip", MatchRegexp(linkLocalIPv4)))
		g.Expect(nets).To(HaveKeyWithValue("0/ipv4/0", MatchRegexp(linkLocalIPv4)))
		g.Expect(nets).To(HaveKeyWithValue("0/ipv6/0", HavePrefix("fe80::")))
		g.Eventually(func() map[string]any { return c.networksOf(vm) }, 5*time.Second).Should(
			HaveKeyWithValue("0/ip", MatchRegexp(realIPv4)))
	})
	t.Run("a late address", func(t *testing.T) {
		g := NewWithT(t)
		vm := install("late")
		c.must("VM.start", vm, false, false)
		g.Expect(c.networksOf(vm)).To(HaveKey("0/ip"))
		uuid := c.field("VM", vm, "uuid").(string)
		_, code := simGuest(g, s.URL(), http.MethodPost, url.Values{"vm": {uuid}, "mode": {"delay"}, "duration": {d.String()}})
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(c.networksOf(vm)).NotTo(HaveKey("0/ip"), "a running guest takes the mode at once")
		g.Eventually(func() map[string]any { return c.networksOf(vm) }, 5*time.Second).Should(HaveKey("0/ip"))
	})
	t.Run("no address", func(t *testing.T) {
		g := NewWithT(t)
		vm := install("silent")
		_, code := simGuest(g, s.URL(), http.MethodPost, url.Values{"vm": {"silent"}, "mode": {"none"}})
		g.Expect(code).To(Equal(http.StatusOK))
		c.must("VM.start", vm, false, false)
		g.Expect(c.field("VM", vm, "guest_metrics")).NotTo(Equal(nullRef), "the agent runs")
		g.Consistently(func() map[string]any { return c.networksOf(vm) }, d).Should(BeEmpty())
		got, _ := simGuest(g, s.URL(), http.MethodGet, url.Values{"vm": {"silent"}})
		g.Expect(got.Mode).To(Equal("none"))
		simGuest(g, s.URL(), http.MethodPost, url.Values{"vm": {"silent"}, "mode": {"normal"}})
		g.Expect(c.networksOf(vm)).To(HaveKeyWithValue("0/ip", MatchRegexp(realIPv4)))
	})
	t.Run("bad requests", func(t *testing.T) {
		g := NewWithT(t)
		for _, q := range []url.Values{
			{"vm": {"nope"}, "mode": {"none"}},
			{"vm": {"Debian Bookworm 12"}, "mode": {"loud"}},
			{"vm": {"Debian Bookworm 12"}, "mode": {"delay"}, "duration": {"soon"}},
		} {
			_, code := simGuest(g, s.URL(), http.MethodPost, q)
			g.Expect(code).To(BeElementOf(http.StatusNotFound, http.StatusBadRequest), q.Encode())
		}
	})
}
