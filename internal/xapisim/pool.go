package xapisim

import (
	"fmt"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// template describes one of the templates the simulated pool ships.
type template struct {
	name        string
	hvm         bool
	memory      int64
	vcpus       int64
	diskSize    int64
	noPVDrivers bool
	osFamily    string
}

// templates are named as XenServer 8 and XCP-ng 8.3 ship them. "Other install
// media" boots an installer with no guest agent: it never reports PV drivers.
var templates = []template{
	{name: "Debian Bookworm 12", memory: 1 * gib, vcpus: 1, diskSize: 10 * gib, osFamily: "debian"},
	{name: "Ubuntu Jammy Jellyfish 22.04", memory: 1 * gib, vcpus: 1, diskSize: 10 * gib, osFamily: "ubuntu"},
	{name: "Rocky Linux 9", memory: 1 * gib, vcpus: 1, diskSize: 10 * gib, osFamily: "rhel"},
	{name: "CentOS Stream 9", memory: 1 * gib, vcpus: 1, diskSize: 10 * gib, osFamily: "rhel"},
	{name: "Windows Server 2022 (64-bit)", hvm: true, memory: 2 * gib, vcpus: 2, diskSize: 32 * gib, osFamily: "windows"},
	{name: "Windows 10 (64-bit)", hvm: true, memory: 2 * gib, vcpus: 2, diskSize: 32 * gib, osFamily: "windows"},
	{name: "Other install media", hvm: true, memory: 512 * mib, vcpus: 1, diskSize: 8 * gib, noPVDrivers: true, osFamily: "other"},
}

func softwareVersion() map[string]any {
	return map[string]any{
		"product_version": "8.4.0", "product_version_text": "8", "product_version_text_short": "8",
		"platform_name": "XCP", "platform_version": "3.4.0", "product_brand": "XenServer",
		"build_number": "stream", "git_id": "0", "hostname": "localhost", "date": "20240229T15:07:05Z",
		"dbv": "2024.0229", "is_preview_release": "false", "xapi": "24.11", "xapi_build": "24.11.0",
		"xen": "4.17.3-4", "linux": "4.19.0+1", "xencenter_min": "2.21", "xencenter_max": "2.21",
		"network_backend": "openvswitch", "db_schema": "5.775",
	}
}

// The names of the pool's networks, as xapi names them: after the NIC for a
// physical network (xapi_pif.ml find_or_create_network), as the
// administrator named it for the VLAN network.
const (
	networkEth0    = "Pool-wide network associated with eth0"
	networkEth1    = "Pool-wide network associated with eth1"
	networkVLAN100 = "VLAN 100"
)

// The names of the pool's SRs, as xapi's installer names the local SR
// (i18n-key local-storage) and as XenCenter names new NFS SRs.
const (
	srLocal = "Local storage"
	srNFS   = "NFS virtual disk storage"
	srISO   = "ISO library"
)

// buildPool creates the pool's objects as an installed XenServer pool has
// them. Called with s.mu held.
func (s *Server) buildPool() {
	// Three networks: the management one on eth0, one on eth1, and VLAN 100
	// on eth1 (network.create, then pool.create_VLAN: a VLAN per host).
	mgmt := s.newNetwork(networkEth0, "xenbr0")
	eth1 := s.newNetwork(networkEth1, "xenbr1")
	vlan := s.newNetwork(networkVLAN100, "xapi0")
	var hosts []*object
	for i := 0; i < s.cfg.Hosts; i++ {
		hostname := fmt.Sprintf("xcp-ng-%02d", i+1)
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		host := s.newHost(hostname, ip)
		s.newPhysicalPIF(host, mgmt, 0, ip)
		s.newVLAN(s.newPhysicalPIF(host, eth1, 1, ""), vlan, 100)
		local := s.newLocalSR(host)
		s.db.update(host, "suspend_image_sr", local.ref, "crash_dump_sr", local.ref)
		dom0 := s.newControlDomain(host, hostname)
		host.sim.memoryFree = s.cfg.HostMemory - host.int("memory_overhead") - memoryNeeded(dom0)
		s.hosts = append(s.hosts, &simHost{obj: host, ip: ip})
		hosts = append(hosts, host)
	}
	shared := s.newSharedSRs(hosts)
	s.pool = s.db.create("pool", map[string]any{
		"name_label":         "xapi-simulator pool",
		"name_description":   "A simulated XenServer pool",
		"master":             s.hosts[0].obj.ref,
		"default_SR":         shared.ref,
		"suspend_image_SR":   shared.ref,
		"crash_dump_SR":      shared.ref,
		"other_config":       map[string]any{},
		"gui_config":         map[string]any{},
		"restrictions":       map[string]any{"restrict_vswitch_controller": "false"},
		"allowed_operations": []any{},
		"cpu_info":           map[string]any{"cpu_count": fmt.Sprint(hostCPUs * s.cfg.Hosts)},
	})
	for _, t := range templates {
		s.newTemplate(t)
	}
}

// newLocalSR is the local LVM SR the installer makes on a host's disk.
func (s *Server) newLocalSR(host *object) *object {
	return s.newSR(map[string]any{
		"name_label":       srLocal,
		"name_description": "",
		"type":             "lvm",
		"content_type":     "user",
		"shared":           false,
		"physical_size":    int64(1) << 40,
		"other_config": map[string]any{
			"i18n-key": "local-storage", "i18n-original-value-name_label": "Local storage",
		},
		"sm_config": map[string]any{"allocation": "thick", "use_vhd": "true"},
	}, []*object{host}, func(*object) map[string]any {
		return map[string]any{"device": "/dev/disk/by-id/ata-SIMULATED_DISK-part3"}
	})
}

// newSharedSRs makes the SRs every host reaches: the NFS SR, which it
// returns, and an NFS ISO library as XenCenter creates one (device_config
// type nfs_iso, which ISOSR.py create copies into sm_config iso_type),
// whose scan reports the file system's size and usage, and as virtual
// allocation its size (ISOSR.py scan); its export is read-only and holds no
// image.
func (s *Server) newSharedSRs(hosts []*object) *object {
	nfs := s.newSR(map[string]any{
		"name_label":       srNFS,
		"name_description": "NFS SR [192.0.2.1:/export/xen]",
		"type":             "nfs",
		"content_type":     "",
		"shared":           true,
		"physical_size":    int64(16) << 40,
	}, hosts, func(*object) map[string]any {
		return map[string]any{"server": "192.0.2.1", "serverpath": "/export/xen"}
	})
	s.newSR(map[string]any{
		"name_label":           srISO,
		"name_description":     "NFS ISO Library [192.0.2.1:/export/iso]",
		"type":                 "iso",
		"content_type":         "iso",
		"shared":               true,
		"physical_size":        int64(512) * gib,
		"virtual_allocation":   int64(512) * gib,
		"physical_utilisation": int64(0),
		"sm_config":            map[string]any{"iso_type": "nfs_iso"},
	}, hosts, func(*object) map[string]any {
		return map[string]any{"location": "192.0.2.1:/export/iso", "type": "nfs_iso"}
	})
	return nfs
}

// newTemplate makes one of the templates the pool ships. Like the ones
// XenServer ships, it has no VIF: a VM installed from it has no network
// until a client creates one.
func (s *Server) newTemplate(t template) {
	fields := map[string]any{
		"name_label":          t.name,
		"name_description":    "Template which allows VM installation from install media",
		"is_a_template":       true,
		"is_default_template": true,
		"memory_static_max":   t.memory, "memory_dynamic_max": t.memory,
		"memory_dynamic_min": t.memory, "memory_static_min": min(t.memory, 512*mib),
		"VCPUs_max": t.vcpus, "VCPUs_at_startup": t.vcpus,
		"other_config": map[string]any{
			"default_template": "true",
			"disks": fmt.Sprintf(`<provision><disk device="0" size="%d" sr="" bootable="true" type="system"/></provision>`,
				t.diskSize),
			"install-methods": "cdrom,nfs,http,ftp",
			"os-family":       t.osFamily,
		},
		"recommendations": `<restrictions><restriction field="memory-static-max" max="137438953472" /><restriction field="vcpus-max" max="32" /></restrictions>`,
	}
	if t.hvm {
		fields["HVM_boot_policy"] = "BIOS order"
		fields["HVM_boot_params"] = map[string]any{"order": "dc"}
		fields["platform"] = map[string]any{"viridian": "true", "acpi": "1", "apic": "true", "pae": "true", "nx": "true"}
		fields["domain_type"] = "hvm"
	} else {
		fields["PV_bootloader"] = "pygrub"
		fields["platform"] = map[string]any{"acpi": "1", "apic": "true", "pae": "true", "nx": "true"}
		fields["domain_type"] = "pv"
	}
	vm := s.createVM(fields)
	vm.sim.noPVDrivers = t.noPVDrivers
}

// coordinator is the pool's master host.
func (s *Server) coordinator() *object { return s.hosts[0].obj }
