package xapisim

import (
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
)

// TestBrownfield: /sim/brownfield makes VMs as another tool would.
func TestBrownfield(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	resp, body := c.post("/sim/brownfield?count=2&start=true", "text/plain", nil)
	g.Expect(resp.StatusCode).To(Equal(200), string(body))
	var vms []BrownfieldVM
	g.Expect(json.Unmarshal(body, &vms)).To(Succeed())
	g.Expect(vms).To(HaveLen(2))
	g.Expect(vms[0].NameLabel).To(Equal("brownfield-1"))
	for _, v := range vms {
		vm := c.must("VM.get_by_uuid", v.UUID).(string)
		rec := c.must("VM.get_record", vm).(map[string]any)
		g.Expect(rec["power_state"]).To(Equal("Running"))
		g.Expect(rec["is_a_template"]).To(BeFalse())
		g.Expect(rec["other_config"]).NotTo(HaveKey("disks"))
		g.Expect(rec["VIFs"]).To(HaveLen(1))
		vif := c.must("VIF.get_record", rec["VIFs"].([]any)[0]).(map[string]any)
		g.Expect(c.field("network", vif["network"].(string), "name_label")).To(Equal(networkEth0))
		g.Expect(c.diskOf(vm)).To(HavePrefix("OpaqueRef:"))
	}
	resp, body = c.post("/sim/brownfield?count=1&prefix=legacy", "text/plain", nil)
	g.Expect(resp.StatusCode).To(Equal(200), string(body))
	g.Expect(json.Unmarshal(body, &vms)).To(Succeed())
	g.Expect(c.field("VM", c.vmByName("legacy-1"), "power_state")).To(Equal("Halted"))
	resp, _ = c.post("/sim/brownfield?template=nope", "text/plain", nil)
	g.Expect(resp.StatusCode).To(Equal(409))
}
