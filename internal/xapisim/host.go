package xapisim

import (
	"strconv"
)

func init() {
	explicitHandlers["host.enable"] = explicit{fn: hostEnable, async: true, mutating: true}
	explicitHandlers["host.disable"] = explicit{fn: hostDisable, async: true, mutating: true, defaults: []any{true}}
	explicitHandlers["host.evacuate"] = explicit{fn: hostEvacuate, async: true, mutating: true,
		defaults: []any{nullRef, int64(0)}}
	explicitHandlers["host.reboot"] = explicit{fn: hostReboot, async: true, mutating: true}
	explicitHandlers["host.shutdown"] = explicit{fn: hostShutdown, async: true, mutating: true}
	explicitHandlers["host.compute_free_memory"] = explicit{fn: hostComputeFreeMemory, async: true}
}

// hostComputeFreeMemory is the memory a new VM could use on the host.
func hostComputeFreeMemory(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	return max(c.s.freeMemory(h), 0), nil
}

// hostOperation runs op on host: it shows in current_operations for its
// duration, so that a conflicting call fails with OTHER_OPERATION_IN_PROGRESS;
// the task's progress takes the given values on the way. Host operations do
// not check for a cancel.
func (c *callCtx) hostOperation(host *object, op string, progress []float64, check func() error,
	apply func() error) (any, error) {
	s := c.s
	if cur := host.strMap("current_operations"); len(cur) > 0 {
		return nil, otherOperationInProgress("host", host.ref, cur)
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, err
		}
	}
	task := c.operationTask()
	host.strMap("current_operations")[task.ref] = op
	s.db.touch(host)
	s.operationStarted()
	cancelled := s.waitOperation(task, s.opDuration("host_"+op), progress, false)
	s.stats.OperationsInFlight--
	delete(host.strMap("current_operations"), task.ref)
	s.db.touch(host)
	if cancelled {
		return nil, newFailure(errTaskCancelled, task.ref)
	}
	return nil, apply()
}

// host is the host the first argument names.
func (c *callCtx) host() (*object, error) { return c.s.db.mustGet("host", c.str(0)) }

func hostEnable(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	return c.hostOperation(h, "enable", nil, nil, func() error {
		c.s.db.update(h, "enabled", true)
		return nil
	})
}

func hostDisable(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	c.s.db.update(h, "enabled", false)
	return nil, nil
}

// residentGuests are the VMs on host other than its control domain.
func (s *Server) residentGuests(host *object) []*object {
	var out []*object
	for _, ref := range host.set("resident_VMs") {
		if vm, ok := s.db.get("VM", ref.(string)); ok && !vm.bool("is_control_domain") {
			out = append(out, vm)
		}
	}
	return out
}

func hostEvacuate(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	s := c.s
	// plan places every guest on another enabled host with room, or fails
	// with the evacuation plan's error for a VM before anything moves
	// (xapi_host.ml compute_evacuation_plan_no_wlb: NO_HOSTS_AVAILABLE [vm]
	// without targets, VM_REQUIRES_SR [vm; sr] when a target cannot reach
	// its disks, HOST_NOT_ENOUGH_FREE_MEMORY [vm] when it fits nowhere).
	plan := func() (map[*object]*object, error) {
		free := map[*object]int64{}
		var targets []*object
		for _, other := range s.hosts {
			if other.obj != h && other.obj.bool("enabled") {
				targets = append(targets, other.obj)
				free[other.obj] = s.freeMemory(other.obj)
			}
		}
		out := map[*object]*object{}
		for _, vm := range s.residentGuests(h) {
			if len(targets) == 0 {
				return nil, newFailure(errNoHostsAvailable, vm.ref)
			}
			for _, t := range targets {
				if sr := s.missingSR(vm, t); sr != "" {
					return nil, newFailure(errVMRequiresSR, vm.ref, sr)
				}
			}
			var best *object
			for _, t := range targets {
				if best == nil || free[t] > free[best] {
					best = t
				}
			}
			if free[best] < memoryNeeded(vm) {
				return nil, newFailure(errHostNotEnoughFreeMemory, vm.ref)
			}
			free[best] -= memoryNeeded(vm)
			out[vm] = best
		}
		return out, nil
	}
	// xapi_host.ml evacuate: progress moves as each VM's migration completes.
	var progress []float64
	if n := len(s.residentGuests(h)); n > 1 {
		for k := 1; k < n; k++ {
			progress = append(progress, float64(k)/float64(n))
		}
	}
	return c.hostOperation(h, "evacuate", progress, func() error { _, err := plan(); return err }, func() error {
		moves, err := plan()
		if err != nil {
			return err
		}
		// Each VM is pool-migrated: it runs on in a new domain there.
		for vm, target := range moves {
			s.migrateTo(vm, target)
			s.refreshAllowedOperations(vm)
		}
		return nil
	})
}

// haltGuests hard-stops every guest of host, as a host reboot or shutdown does.
func (s *Server) haltGuests(host *object) {
	for _, vm := range s.residentGuests(host) {
		s.halt(vm)
		s.refreshAllowedOperations(vm)
	}
}

// mustBeDisabled is the check of host.reboot and host.shutdown.
func mustBeDisabled(h *object) func() error {
	return func() error {
		if h.bool("enabled") {
			return newFailure(errHostNotDisabled)
		}
		return nil
	}
}

func hostReboot(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	return c.hostOperation(h, "reboot", nil, mustBeDisabled(h), func() error {
		c.s.haltGuests(h)
		// xapi enables the host again when it comes back.
		c.s.db.update(h, "enabled", true)
		return nil
	})
}

func hostShutdown(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	return c.hostOperation(h, "shutdown", nil, mustBeDisabled(h), func() error {
		c.s.haltGuests(h)
		if m, ok := c.s.db.get("host_metrics", h.str("metrics")); ok {
			c.s.db.update(m, "live", false)
		}
		return nil
	})
}

// hostCPUs is the number of CPUs of each simulated host.
const hostCPUs = 16

// The CPU every simulated host has, as /proc/cpuinfo and xenopsd describe it.
const (
	cpuVendor    = "GenuineIntel"
	cpuSpeed     = "2394.374"
	cpuModelname = "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz"
	cpuFamily    = "6"
	cpuModel     = "85"
	cpuStepping  = "7"
	cpuFlags     = "fpu de tsc msr pae mce cx8 apic sep mca cmov pat clflush acpi mmx fxsr sse sse2 ht syscall nx lm constant_tsc rep_good nopl nonstop_tsc cpuid pni pclmulqdq monitor est ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase bmi1 avx2 bmi2 erms rtm avx512f avx512dq rdseed adx avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1"
	cpuFeatures  = "1fcbfbff-f7fa3223-2d93fbff-00000523-00000001-000f0fbb-00000000-00000000-00001000-ac000400-00000000-00000000-00000000-00000000-00000000-00000000-00000000-00000000-00000000"
)

// newHost creates a host as xapi records an installed, running one
// (xapi_host.ml create, then the startup sync: software_version, cpu_info
// and one host_cpu per CPU from create_misc.ml create_host_cpu, its
// host_metrics live).
func (s *Server) newHost(hostname, ip string) *object {
	metrics := s.db.create("host_metrics", map[string]any{
		"memory_total": s.cfg.HostMemory,
		"live":         true,
		"last_updated": now(),
		"other_config": map[string]any{},
	})
	host := s.db.create("host", map[string]any{
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
			"cpu_count": strconv.Itoa(hostCPUs), "socket_count": "2", "threads_per_core": "1", "nr_nodes": "2",
			"vendor": cpuVendor, "speed": cpuSpeed, "modelname": cpuModelname, "family": cpuFamily,
			"model": cpuModel, "stepping": cpuStepping, "flags": cpuFlags, "features_pv": cpuFeatures,
			"features_hvm": cpuFeatures, "features_pv_host": cpuFeatures, "features_hvm_host": cpuFeatures,
		},
		"edition":                            "xcp-ng",
		"license_params":                     map[string]any{},
		"capabilities":                       []any{"xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64"},
		"sched_policy":                       "credit",
		"supported_bootloaders":              []any{"pygrub", "eliloader"},
		"virtual_hardware_platform_versions": []any{int64(0), int64(1), int64(2)},
		"chipset_info":                       map[string]any{"iommu": "true"},
		"allowed_operations":                 []any{"provision", "evacuate", "reboot", "shutdown", "vm_start", "vm_resume", "vm_migrate"},
		"iscsi_iqn":                          "iqn.2024-01.com.example:" + hostname,
		"other_config":                       map[string]any{"iscsi_iqn": "iqn.2024-01.com.example:" + hostname},
		"https_only":                         false,
	})
	speed, _ := strconv.ParseFloat(cpuSpeed, 64)
	family, _ := strconv.ParseInt(cpuFamily, 10, 64)
	model, _ := strconv.ParseInt(cpuModel, 10, 64)
	for i := range hostCPUs {
		s.db.create("host_cpu", map[string]any{
			"host": host.ref, "number": int64(i), "vendor": cpuVendor, "speed": int64(speed),
			"modelname": cpuModelname, "utilisation": float64(0), "flags": cpuFlags, "stepping": cpuStepping,
			"model": model, "family": family, "features": "", "other_config": map[string]any{},
		})
	}
	return host
}

// newControlDomain creates a host's dom0 as create_misc.ml
// create_domain_zero_record does, with its metrics
// (create_domain_zero_metrics_record).
func (s *Server) newControlDomain(host *object, hostname string) *object {
	const memory = 4 * gib
	metrics := s.db.create("VM_metrics", map[string]any{
		"memory_actual": memory, "VCPUs_number": int64(hostCPUs), "start_time": epoch, "install_time": epoch,
		"last_updated": epoch, "hvm": false, "nested_virt": false, "nomigrate": false, "current_domain_type": "pv",
	})
	dom0 := s.db.create("VM", map[string]any{
		"name_label":       "Control domain on host: " + hostname,
		"name_description": "The domain which manages physical devices and manages other domains",
		"HVM_boot_policy":  "", "HVM_shadow_multiplier": float64(1), "actions_after_softreboot": "soft_reboot",
		"actions_after_crash": "destroy", "actions_after_reboot": "destroy", "actions_after_shutdown": "destroy",
		"power_state": "Running", "VCPUs_max": int64(hostCPUs), "VCPUs_at_startup": int64(hostCPUs),
		"memory_overhead":   int64(0),
		"memory_static_max": memory, "memory_dynamic_max": memory, "memory_target": memory,
		"memory_dynamic_min": memory, "memory_static_min": memory,
		"resident_on": host.ref, "scheduled_to_be_resident_on": nullRef, "affinity": host.ref,
		"domid": int64(0), "domarch": "x64", "is_control_domain": true, "user_version": int64(1),
		"metrics": metrics.ref, "generation_id": "", "hardware_platform_version": int64(0),
		"domain_type": "pv",
	})
	s.db.update(host, "control_domain", dom0.ref)
	s.refreshAllowedOperations(dom0)
	return dom0
}
