package xapisim

import (
	"strconv"
	"testing"

	. "github.com/onsi/gomega"
)

// records returns get_all_records of a class as a map of records.
func (c *rawClient) records(class string) map[string]map[string]any {
	c.t.Helper()
	out := map[string]map[string]any{}
	for ref, rec := range c.must(class + ".get_all_records").(map[string]any) {
		out[ref] = rec.(map[string]any)
	}
	return out
}

// TestThePoolsClasses checks the classes a pool is made of as xapi records
// them (XENAPI.md §8, §9): each host has its management PIF on the
// management network (xapi_pif.ml introduce_internal, then the management
// interface with its IP), one host_cpu per CPU (create_misc.ml create_host_cpu), and a
// PBD to every SR it reaches, plugged (xapi_pbd.ml create_common); the sets
// host.PIFs, host.PBDs, host.host_CPUs, SR.PBDs and network.PIFs are the
// database's one-to-many relations (datamodel.ml all_relations).
func TestThePoolsClasses(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 3})
	c := newClient(t, s.URL()).login()
	hosts, srs, networks := c.records("host"), c.records("SR"), c.records("network")
	pifs, pbds, cpus := c.records("PIF"), c.records("PBD"), c.records("host_cpu")
	g.Expect(hosts).To(HaveLen(3))
	g.Expect(networks).To(HaveLen(3))

	refsOf := func(v any) []string {
		var out []string
		for _, r := range v.([]any) {
			out = append(out, r.(string))
		}
		return out
	}
	for ref, host := range hosts {
		// PIFs: the management interface, with the host's address, eth1 and
		// its VLAN.
		g.Expect(host["PIFs"]).To(HaveLen(3))
		var pif map[string]any
		for _, p := range refsOf(host["PIFs"]) {
			if pifs[p]["management"] == true {
				pif = pifs[p]
			}
		}
		g.Expect(pif).NotTo(BeNil())
		g.Expect(pif).To(HaveKeyWithValue("host", ref))
		g.Expect(pif).To(HaveKeyWithValue("management", true))
		g.Expect(pif).To(HaveKeyWithValue("currently_attached", true))
		g.Expect(pif).To(HaveKeyWithValue("physical", true))
		g.Expect(pif).To(HaveKeyWithValue("IP", host["address"]))
		g.Expect(pif).To(HaveKeyWithValue("ip_configuration_mode", "Static"))
		g.Expect(pif).To(HaveKeyWithValue("device", "eth0"))
		g.Expect(pif).To(HaveKeyWithValue("VLAN", "-1"))
		g.Expect(pif).To(HaveKeyWithValue("managed", true))
		g.Expect(pif).To(HaveKeyWithValue("properties", map[string]any{"gro": "on"}))
		g.Expect(pif["MAC"]).To(MatchRegexp(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`))
		metrics := c.must("PIF_metrics.get_record", pif["metrics"]).(map[string]any)
		g.Expect(metrics).To(HaveKeyWithValue("carrier", true))

		// host_CPUs: one per CPU, numbered from 0.
		n, err := strconv.Atoi(host["cpu_info"].(map[string]any)["cpu_count"].(string))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(host["host_CPUs"]).To(HaveLen(n))
		numbers := map[string]bool{}
		for _, cpu := range refsOf(host["host_CPUs"]) {
			g.Expect(cpus[cpu]).To(HaveKeyWithValue("host", ref))
			g.Expect(cpus[cpu]).To(HaveKeyWithValue("vendor", host["cpu_info"].(map[string]any)["vendor"]))
			numbers[cpus[cpu]["number"].(string)] = true
		}
		g.Expect(numbers).To(HaveLen(n))
		g.Expect(numbers).To(HaveKey("0"))

		// PBDs: the shared SRs and the host's local SR, all plugged.
		g.Expect(host["PBDs"]).To(HaveLen(3))
		local := 0
		for _, pbd := range refsOf(host["PBDs"]) {
			g.Expect(pbds[pbd]).To(HaveKeyWithValue("host", ref))
			g.Expect(pbds[pbd]).To(HaveKeyWithValue("currently_attached", true))
			g.Expect(pbds[pbd]["device_config"]).NotTo(BeEmpty())
			sr := srs[pbds[pbd]["SR"].(string)]
			g.Expect(sr["PBDs"]).To(ContainElement(pbd))
			if !sr["shared"].(bool) {
				local++
				g.Expect(sr["PBDs"]).To(HaveLen(1), "a local SR is reached from its host only")
				g.Expect(host["suspend_image_sr"]).To(Equal(pbds[pbd]["SR"]))
			}
		}
		g.Expect(local).To(Equal(1))
	}
	g.Expect(pifs).To(HaveLen(3 * 3))
	g.Expect(cpus).To(HaveLen(3 * hostCPUs))
	g.Expect(pbds).To(HaveLen(3 + 3 + 3))
	for ref, network := range networks {
		g.Expect(network["PIFs"]).To(HaveLen(3), "one PIF per host")
		for _, pif := range refsOf(network["PIFs"]) {
			g.Expect(pifs[pif]).To(HaveKeyWithValue("network", ref))
		}
	}
	pool := c.must("pool.get_all").([]any)[0]
	shared := srs[c.must("pool.get_default_SR", pool).(string)]
	g.Expect(shared).To(HaveKeyWithValue("shared", true))
	g.Expect(shared["PBDs"]).To(HaveLen(3), "the default SR is reached from every host")
}

// TestThePoolsNetworks checks the pool's three networks, whose names are a
// contract with the operator's tests: the management network on eth0, one on
// eth1 (each named and bridged after its NIC by xapi_pif.ml
// find_or_create_network and bridge_naming_convention), and "VLAN 100", made
// by network.create (xapi_network.ml create: bridge xapi<N>) and a
// VLAN.create per host on eth1 (xapi_vlan.ml create_internal: an untagged
// PIF named after eth1 with the dummy MAC, VLAN 100, eth1's metrics, plugged;
// the VLAN object linking it to eth1).
func TestThePoolsNetworks(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	pifs, vlans := c.records("PIF"), c.records("VLAN")
	byName := map[string]map[string]any{}
	for _, n := range c.records("network") {
		byName[n["name_label"].(string)] = n
	}
	g.Expect(byName).To(HaveLen(3))
	for name, bridge := range map[string]string{
		"Pool-wide network associated with eth0": "xenbr0",
		"Pool-wide network associated with eth1": "xenbr1",
		"VLAN 100":                               "xapi0",
	} {
		g.Expect(byName).To(HaveKey(name))
		n := byName[name]
		g.Expect(n).To(HaveKeyWithValue("bridge", bridge))
		g.Expect(n).To(HaveKeyWithValue("MTU", "1500"))
		g.Expect(n).To(HaveKeyWithValue("managed", true))
		g.Expect(n).To(HaveKeyWithValue("PIFs", HaveLen(2)))
	}
	for _, ref := range byName["Pool-wide network associated with eth1"]["PIFs"].([]any) {
		pif := pifs[ref.(string)]
		g.Expect(pif).To(HaveKeyWithValue("device", "eth1"))
		g.Expect(pif).To(HaveKeyWithValue("VLAN", "-1"))
		g.Expect(pif).To(HaveKeyWithValue("physical", true))
		g.Expect(pif).To(HaveKeyWithValue("management", false))
		g.Expect(pif).To(HaveKeyWithValue("ip_configuration_mode", "None"))
		g.Expect(pif).To(HaveKeyWithValue("currently_attached", false), "down until a VM needs it")
		g.Expect(pif).To(HaveKeyWithValue("VLAN_slave_of", HaveLen(1)))
	}
	g.Expect(vlans).To(HaveLen(2))
	for ref, vlan := range vlans {
		g.Expect(vlan).To(HaveKeyWithValue("tag", "100"))
		tagged, untagged := pifs[vlan["tagged_PIF"].(string)], pifs[vlan["untagged_PIF"].(string)]
		g.Expect(tagged).To(HaveKeyWithValue("VLAN_slave_of", []any{ref}))
		g.Expect(untagged).To(HaveKeyWithValue("VLAN_master_of", ref))
		g.Expect(untagged).To(HaveKeyWithValue("network", c.refByName("network", "VLAN 100")))
		g.Expect(untagged).To(HaveKeyWithValue("host", tagged["host"]))
		g.Expect(untagged).To(HaveKeyWithValue("device", "eth1"))
		g.Expect(untagged).To(HaveKeyWithValue("VLAN", "100"))
		g.Expect(untagged).To(HaveKeyWithValue("MAC", "fe:ff:ff:ff:ff:ff"))
		g.Expect(untagged).To(HaveKeyWithValue("metrics", tagged["metrics"]))
		g.Expect(untagged).To(HaveKeyWithValue("physical", false))
		g.Expect(untagged).To(HaveKeyWithValue("currently_attached", true))
		g.Expect(untagged).To(HaveKeyWithValue("IPv6", []any{""}))
	}
}
