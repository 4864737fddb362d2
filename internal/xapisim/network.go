package xapisim

import (
	"fmt"
)

// newNetwork is the network xapi creates for a host's NIC when it
// introduces the PIF (xapi_pif.ml find_or_create_network), or that
// network.create makes for a VLAN (xapi_network.ml create, which names the
// bridge xapi<N> when given none): MTU 1500, no other_config, unlocked by
// default.
func (s *Server) newNetwork(nameLabel, bridge string) *object {
	return s.db.create("network", map[string]any{
		"name_label": nameLabel, "name_description": "", "MTU": int64(1500), "purpose": []any{},
		"bridge": bridge, "managed": true, "other_config": map[string]any{}, "blobs": map[string]any{},
		"tags": []any{}, "default_locking_mode": "unlocked", "assigned_ips": map[string]any{},
		"allowed_operations": []any{}, "current_operations": map[string]any{},
	})
}

// pifMetrics is the PIF_metrics of a host's NIC as the monitor thread fills
// them in: an Intel I350 port with carrier at 1 Gb/s.
func (s *Server) pifMetrics(port int) *object {
	return s.db.create("PIF_metrics", map[string]any{
		"carrier": true, "vendor_id": "8086", "vendor_name": "Intel Corporation", "device_id": "1521",
		"device_name": "I350 Gigabit Network Connection", "speed": int64(1000), "duplex": true,
		"pci_bus_path": fmt.Sprintf("0000:01:00.%d", port), "last_updated": now(), "other_config": map[string]any{},
	})
}

// newPhysicalPIF is a host's NIC eth<port> as xapi records it once the host
// is installed: introduced (xapi_pif.ml introduce_internal: physical,
// managed, VLAN -1, not attached, no IP, igmp_snooping_status unknown,
// properties gro=on, a PIF_metrics). The management NIC (given an ip) is
// then made the management interface with its static IP and brought up
// (nm.ml bring_pif_up: igmp_snooping_status follows the pool's setting);
// another NIC stays down until a VM needs its network.
func (s *Server) newPhysicalPIF(host, network *object, port int, ip string) *object {
	fields := map[string]any{
		"device": fmt.Sprintf("eth%d", port), "network": network.ref, "host": host.ref, "MAC": nicMAC(),
		"MTU": int64(1500), "VLAN": int64(-1), "metrics": s.pifMetrics(port).ref, "physical": true,
		"currently_attached": false, "ip_configuration_mode": "None", "IP": "", "netmask": "", "gateway": "",
		"DNS": "", "bond_slave_of": nullRef, "bond_master_of": []any{}, "VLAN_master_of": nullRef,
		"VLAN_slave_of": []any{}, "management": false, "other_config": map[string]any{},
		"disallow_unplug": false, "tunnel_access_PIF_of": []any{}, "tunnel_transport_PIF_of": []any{},
		"ipv6_configuration_mode": "None", "IPv6": []any{}, "ipv6_gateway": "",
		"primary_address_type": "IPv4", "managed": true, "properties": map[string]any{"gro": "on"},
		"capabilities": []any{}, "igmp_snooping_status": "unknown", "sriov_physical_PIF_of": []any{},
		"sriov_logical_PIF_of": []any{}, "PCI": nullRef,
	}
	if ip != "" {
		for k, v := range map[string]any{
			"management": true, "currently_attached": true, "ip_configuration_mode": "Static", "IP": ip,
			"netmask": "255.0.0.0", "igmp_snooping_status": "disabled",
		} {
			fields[k] = v
		}
	}
	return s.db.create("PIF", fields)
}

// vlanMAC is the dummy MAC of a VLAN's untagged PIF (xapi_vlan.ml vlan_mac).
const vlanMAC = "fe:ff:ff:ff:ff:ff"

// newVLAN is VLAN.create on a host's tagged PIF (xapi_vlan.ml create and
// create_internal): an untagged PIF on the VLAN's network, named after the
// tagged device, with the dummy MAC, the tagged PIF's MTU, metrics and
// primary address type, not physical, no IP, IPv6 [""]; the VLAN object
// linking the two; then the untagged PIF is plugged (currently_attached;
// nm.ml leaves igmp_snooping_status alone on a VLAN).
func (s *Server) newVLAN(tagged, network *object, tag int64) *object {
	untagged := s.db.create("PIF", map[string]any{
		"device": tagged.str("device"), "network": network.ref, "host": tagged.str("host"), "MAC": vlanMAC,
		"MTU": tagged.int("MTU"), "VLAN": tag, "metrics": tagged.str("metrics"), "physical": false,
		"currently_attached": false, "igmp_snooping_status": "unknown", "ip_configuration_mode": "None",
		"IP": "", "netmask": "", "gateway": "", "DNS": "", "bond_slave_of": nullRef, "management": false,
		"other_config": map[string]any{}, "disallow_unplug": false, "ipv6_configuration_mode": "None",
		"IPv6": []any{""}, "ipv6_gateway": "", "primary_address_type": tagged.str("primary_address_type"),
		"managed": true, "properties": map[string]any{}, "capabilities": []any{}, "PCI": nullRef,
	})
	vlan := s.db.create("VLAN", map[string]any{
		"tagged_PIF": tagged.ref, "untagged_PIF": untagged.ref, "tag": tag, "other_config": map[string]any{},
	})
	s.db.update(untagged, "VLAN_master_of", vlan.ref, "currently_attached", true)
	return vlan
}

// nicMAC is a random address in an Intel OUI, as a host's NIC has.
func nicMAC() string {
	u := newUUID()
	return fmt.Sprintf("a0:36:9f:%s:%s:%s", u[0:2], u[2:4], u[4:6])
}
