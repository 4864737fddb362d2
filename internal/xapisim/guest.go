package xapisim

import (
	"fmt"
	"sort"
	"time"
)

// guestNetworks is what the guest agent reports in VM_guest_metrics.networks
// (xapi_guest_agent.ml: "<device>/ip" for the first IPv4 address,
// "<device>/ipv4/<n>" and "<device>/ipv6/<n>"): an address for each VIF
// that is attached and on a network that exists. A VIF keeps its addresses
// for as long as it exists, as a DHCP lease follows the MAC.
func (s *Server) guestNetworks(vm *object) map[string]any {
	networks := map[string]any{}
	var vifs []*object
	for _, ref := range vm.set("VIFs") {
		if vif, ok := s.db.get("VIF", ref.(string)); ok && vif.bool("currently_attached") {
			if _, ok := s.db.get("network", vif.str("network")); ok {
				vifs = append(vifs, vif)
			}
		}
	}
	sort.Slice(vifs, func(i, j int) bool { return vifs[i].str("device") < vifs[j].str("device") })
	for _, vif := range vifs {
		if vif.sim.ip == 0 {
			s.nextIP++
			vif.sim.ip = s.nextIP
		}
		n, d := vif.sim.ip, vif.str("device")
		ip := fmt.Sprintf("10.%d.%d.%d", 10+(n>>16)&0xff, (n>>8)&0xff, n&0xff)
		networks[d+"/ip"] = ip
		networks[d+"/ipv4/0"] = ip
		networks[d+"/ipv6/0"] = fmt.Sprintf("fe80::%x:%x", n>>16, n&0xffff)
	}
	return networks
}

// guestNetworksChanged makes a running guest's agent report its addresses
// again after its VIFs changed.
func (s *Server) guestNetworksChanged(vm *object) {
	gm, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics"))
	if !ok {
		return
	}
	networks := s.guestNetworks(vm)
	if fmt.Sprint(networks) != fmt.Sprint(gm.strMap("networks")) {
		s.db.update(gm, "networks", networks, "last_updated", time.Now().UTC())
	}
}
