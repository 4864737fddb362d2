package xapisim

import (
	"fmt"
	"time"
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

// buildPool creates the pool's objects. Called with s.mu held.
func (s *Server) buildPool() {
	db := s.db
	now := time.Now().UTC()

	network := db.create("network", map[string]any{
		"name_label":       "Pool-wide network associated with eth0",
		"name_description": "",
		"bridge":           "xenbr0",
		"MTU":              int64(1500),
		"managed":          true,
		"other_config":     map[string]any{"automatic": "true"},
	})
	shared := db.create("SR", map[string]any{
		"name_label":           "NFS virtual disk storage",
		"name_description":     "NFS SR [192.0.2.1:/export/xen]",
		"type":                 "nfs",
		"content_type":         "",
		"shared":               true,
		"physical_size":        int64(16) << 40,
		"physical_utilisation": int64(0),
		"virtual_allocation":   int64(0),
		"allowed_operations":   []any{"vdi_create", "vdi_destroy", "vdi_resize", "vdi_clone", "vdi_snapshot", "scan"},
		"other_config":         map[string]any{},
		"sm_config":            map[string]any{},
	})

	for i := 0; i < s.cfg.Hosts; i++ {
		hostname := fmt.Sprintf("xcp-ng-%02d", i+1)
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		metrics := db.create("host_metrics", map[string]any{
			"memory_total": s.cfg.HostMemory,
			"live":         true,
			"last_updated": now,
		})
		host := db.create("host", map[string]any{
			"name_label":         hostname,
			"name_description":   "Default install",
			"hostname":           hostname,
			"address":            ip,
			"enabled":            true,
			"API_version_major":  int64(2),
			"API_version_minor":  int64(21),
			"API_version_vendor": "XenSource",
			"software_version":   softwareVersion(),
			"memory_overhead":    int64(512) * mib,
			"metrics":            metrics.ref,
			"cpu_info": map[string]any{
				"cpu_count": "16", "socket_count": "2", "vendor": "GenuineIntel", "speed": "2394.374",
				"modelname": "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz", "family": "6", "model": "85",
			},
			"edition":            "xcp-ng",
			"license_params":     map[string]any{},
			"capabilities":       []any{"xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_64"},
			"sched_policy":       "credit",
			"allowed_operations": []any{"provision", "evacuate", "reboot", "shutdown", "vm_start", "vm_resume", "vm_migrate"},
			"other_config":       map[string]any{"iscsi_iqn": "iqn.2024-01.com.example:" + hostname},
			"https_only":         false,
		})
		local := db.create("SR", map[string]any{
			"name_label":         "Local storage",
			"name_description":   "Local storage on " + hostname,
			"type":               "lvm",
			"shared":             false,
			"physical_size":      int64(1) << 40,
			"allowed_operations": []any{"vdi_create", "vdi_destroy", "vdi_resize", "vdi_clone", "vdi_snapshot", "scan"},
		})
		_ = local
		dom0 := s.newVM(map[string]any{
			"name_label":        "Control domain on host: " + hostname,
			"name_description":  "The domain which manages physical devices and manages other domains",
			"power_state":       "Running",
			"is_control_domain": true,
			"resident_on":       host.ref,
			"domid":             int64(0),
			"memory_static_max": 4 * gib, "memory_dynamic_max": 4 * gib,
			"memory_dynamic_min": 4 * gib, "memory_static_min": 4 * gib, "memory_target": 4 * gib,
			"VCPUs_max": int64(16), "VCPUs_at_startup": int64(16),
			"domain_type": "pv",
		})
		db.update(host, "control_domain", dom0.ref, "resident_VMs", []any{dom0.ref})
		host.sim.memoryFree = s.cfg.HostMemory - host.int("memory_overhead") - memoryNeeded(dom0)
		s.hosts = append(s.hosts, &simHost{obj: host, ip: ip})
	}

	s.pool = db.create("pool", map[string]any{
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
		"cpu_info":           map[string]any{"cpu_count": fmt.Sprint(16 * s.cfg.Hosts)},
	})

	for _, t := range templates {
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
		vm := s.newVM(fields)
		vm.sim.noPVDrivers = t.noPVDrivers
		s.newVIF(vm, network, "0")
	}
}

// newVM creates a VM with its VM_metrics and xapi's defaults.
func (s *Server) newVM(fields map[string]any) *object {
	metrics := s.db.create("VM_metrics", map[string]any{
		"memory_actual": fields["memory_static_max"],
		"VCPUs_number":  fields["VCPUs_at_startup"],
		"install_time":  time.Now().UTC(),
		"current_domain_type": func() any {
			if dt, ok := fields["domain_type"]; ok {
				return dt
			}
			return "hvm"
		}(),
	})
	base := map[string]any{
		"power_state":               "Halted",
		"user_version":              int64(1),
		"domid":                     int64(-1),
		"actions_after_shutdown":    "destroy",
		"actions_after_reboot":      "restart",
		"actions_after_crash":       "restart",
		"HVM_shadow_multiplier":     float64(1),
		"metrics":                   metrics.ref,
		"domain_type":               "hvm",
		"hardware_platform_version": int64(0),
	}
	for k, v := range fields {
		base[k] = v
	}
	vm := s.db.create("VM", base)
	s.refreshAllowedOperations(vm)
	return vm
}

// newVIF attaches a VIF on network to vm.
func (s *Server) newVIF(vm, network *object, device string) {
	vif := s.db.create("VIF", map[string]any{
		"device":             device,
		"network":            network.ref,
		"VM":                 vm.ref,
		"MAC":                randomMAC(),
		"MTU":                int64(1500),
		"locking_mode":       "network_default",
		"allowed_operations": []any{"attach"},
	})
	s.db.refSetAdd(vm, "VIFs", vif.ref)
	s.db.refSetAdd(network, "VIFs", vif.ref)
}

func randomMAC() string {
	u := newUUID()
	return fmt.Sprintf("%s:%s:%s:%s:%s:%s", "be", u[0:2], u[2:4], u[4:6], u[6:8], u[9:11])
}

// coordinator is the pool's master host.
func (s *Server) coordinator() *object { return s.hosts[0].obj }

// defaultSR is the pool's default SR.
func (s *Server) defaultSR() *object {
	sr, _ := s.db.get("SR", s.pool.str("default_SR"))
	return sr
}
