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
// them (XENAPI.md §8, §9): each host has its management PIF on the pool's
// network (xapi_pif.ml introduce_internal, then the management interface
// with its IP), one host_cpu per CPU (create_misc.ml create_host_cpu), and a
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
	g.Expect(networks).To(HaveLen(1))

	refsOf := func(v any) []string {
		var out []string
		for _, r := range v.([]any) {
			out = append(out, r.(string))
		}
		return out
	}
	for ref, host := range hosts {
		// PIFs: the management interface, with the host's address.
		g.Expect(host["PIFs"]).To(HaveLen(1))
		pif := pifs[refsOf(host["PIFs"])[0]]
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

		// PBDs: the shared SR and the host's local SR, both plugged.
		g.Expect(host["PBDs"]).To(HaveLen(2))
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
	g.Expect(pifs).To(HaveLen(3))
	g.Expect(cpus).To(HaveLen(3 * hostCPUs))
	g.Expect(pbds).To(HaveLen(3 + 3))
	for ref, network := range networks {
		g.Expect(network["PIFs"]).To(ConsistOf(keysOf(pifs)))
		for _, pif := range pifs {
			g.Expect(pif).To(HaveKeyWithValue("network", ref))
		}
		g.Expect(network).To(HaveKeyWithValue("bridge", "xenbr0"))
	}
	pool := c.must("pool.get_all").([]any)[0]
	shared := srs[c.must("pool.get_default_SR", pool).(string)]
	g.Expect(shared).To(HaveKeyWithValue("shared", true))
	g.Expect(shared["PBDs"]).To(HaveLen(3), "the default SR is reached from every host")
}

func keysOf[V any](m map[string]V) []any {
	var out []any
	for k := range m {
		out = append(out, k)
	}
	return out
}
