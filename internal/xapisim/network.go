package xapisim

import (
	"crypto/md5" //nolint:gosec // xapi derives VIF MACs with MD5 (Digest.string)
	"fmt"
	"strconv"
)

func init() {
	explicitHandlers["VIF.destroy"] = explicit{fn: vifDestroy, async: true, mutating: true}
}

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

// newVIF is VIF.create with the fields a caller gives (xapi_vif_helpers.ml
// create): with no MAC, one is derived from the VM's other_config:mac_seed
// and the device (MAC_autogenerated); not attached; no status; addressing
// modes None.
func (s *Server) newVIF(vm, network *object, fields map[string]any) {
	base := map[string]any{
		"current_operations": map[string]any{}, "network": network.ref, "VM": vm.ref, "MTU": int64(1500),
		"other_config": map[string]any{}, "currently_attached": false, "status_code": int64(0),
		"status_detail": "", "runtime_properties": map[string]any{}, "qos_algorithm_type": "",
		"qos_algorithm_params": map[string]any{}, "qos_supported_algorithms": []any{},
		"MAC_autogenerated": false, "locking_mode": "network_default", "ipv4_allowed": []any{},
		"ipv6_allowed": []any{}, "ipv4_configuration_mode": "None", "ipv4_addresses": []any{},
		"ipv4_gateway": "", "ipv6_configuration_mode": "None", "ipv6_addresses": []any{}, "ipv6_gateway": "",
	}
	for k, v := range fields {
		base[k] = v
	}
	if mac, _ := base["MAC"].(string); mac == "" {
		if seed, ok := vm.strMap("other_config")["mac_seed"].(string); ok {
			dev, _ := strconv.Atoi(base["device"].(string))
			base["MAC"], base["MAC_autogenerated"] = genMAC(dev, seed), true
		}
	}
	vif := s.db.create("VIF", base)
	s.refreshVIFOperations(vif)
}

// genMAC is xapi_vif_helpers.ml gen_mac: MD5 applied 2×device+1 times to
// the seed, four bytes of that and two of its MD5, with the locally
// administered bit set and the multicast bit clear.
func genMAC(device int, seed string) string {
	d := md5.Sum([]byte(seed)) //nolint:gosec // as xapi does
	for range 2 * device {
		d = md5.Sum(d[:]) //nolint:gosec // as xapi does
	}
	d2 := md5.Sum(d[:]) //nolint:gosec // as xapi does
	b := []byte{d[0], d[1], d[2], d[3], d2[1], d2[2]}
	b[0] = (b[0] | 0x2) &^ 0x1
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

// refreshVIFOperations recomputes VIF.allowed_operations as
// xapi_vif_helpers.ml valid_operations does: plug and unplug need a running
// VM (an HVM guest with PV drivers), and a control domain never plugs.
func (s *Server) refreshVIFOperations(vif *object) {
	allowed := []any{"attach"}
	if vm, ok := s.db.get("VM", vif.str("VM")); ok && vm.str("power_state") == "Running" &&
		s.hotplugs(vm, "can_use_hotplug_vif") {
		switch {
		case vif.bool("currently_attached"):
			allowed = append(allowed, "unplug")
		case !vm.bool("is_control_domain"):
			allowed = append(allowed, "plug")
		}
	}
	setIfChanged(s.db, vif, "allowed_operations", allowed)
}

// vifDestroy is VIF.destroy: refused while attached to a running VM
// (xapi_vif_helpers.ml destroy).
func vifDestroy(c *callCtx) (any, error) {
	vif, err := c.s.db.mustGet("VIF", c.str(0))
	if err != nil {
		return nil, err
	}
	if vm, ok := c.s.db.get("VM", vif.str("VM")); ok && vm.int("domid") != -1 && vif.bool("currently_attached") {
		return nil, newFailure(errOperationNotAllowed, "VIF currently attached to a running VM")
	}
	c.s.db.destroy(vif)
	return nil, nil
}

// nicMAC is a random address in an Intel OUI, as a host's NIC has.
func nicMAC() string {
	u := newUUID()
	return fmt.Sprintf("a0:36:9f:%s:%s:%s", u[0:2], u[2:4], u[4:6])
}
