package cache

import (
	"unique"

	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// What the cache keeps of a record is what its readers use, with the
// values that repeat from record to record (refs of the hosts, networks and
// SRs, power states, operation names, the template's other_config that
// every clone copies) stored once. Records come from the event stream,
// which may hand the same record to other subscribers: they are copied,
// never changed.

// intern returns the one copy of s the process keeps.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

func internAll(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = intern(s)
	}
	return out
}

// internMap interns a map's keys, and its values when values is set (not
// for per-object values such as the operator's UID tag: they never repeat).
func internMap(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[intern(k)] = intern(v)
	}
	return out
}

// slimVM drops allowed_operations (no reader uses a VM's) and shares the
// repeated values.
func slimVM(vm *xenapi.VM) *xenapi.VM {
	if vm == nil {
		return nil
	}
	c := *vm
	c.PowerState = xenapi.PowerState(intern(string(vm.PowerState)))
	c.ResidentOn, c.Affinity, c.DomainType = intern(vm.ResidentOn), intern(vm.Affinity), intern(vm.DomainType)
	c.NameDescription = intern(vm.NameDescription)
	c.OtherConfig = internMap(vm.OtherConfig)
	c.BlockedOperations = internMap(vm.BlockedOperations)
	c.CurrentOperations = internMap(vm.CurrentOperations)
	c.AllowedOperations = nil
	c.Tags = internAll(vm.Tags)
	return &c
}

// slimGuestMetrics drops os_version and other (no reader uses them).
func slimGuestMetrics(g *xenapi.GuestMetrics) *xenapi.GuestMetrics {
	if g == nil {
		return nil
	}
	c := *g
	c.OSVersion, c.Other = nil, nil
	return &c
}

func slimVBD(v *xenapi.VBD) *xenapi.VBD {
	if v == nil {
		return nil
	}
	c := *v
	c.Type, c.Mode, c.Userdevice = intern(v.Type), intern(v.Mode), intern(v.Userdevice)
	c.AllowedOperations = internAll(v.AllowedOperations)
	return &c
}

func slimVIF(v *xenapi.VIF) *xenapi.VIF {
	if v == nil {
		return nil
	}
	c := *v
	c.Network, c.Device = intern(v.Network), intern(v.Device)
	c.AllowedOperations = internAll(v.AllowedOperations)
	return &c
}

func slimVDI(v *xenapi.VDI) *xenapi.VDI {
	if v == nil {
		return nil
	}
	c := *v
	c.SR, c.Type, c.NameLabel = intern(v.SR), intern(v.Type), intern(v.NameLabel)
	c.OtherConfig = internMap(v.OtherConfig)
	c.AllowedOperations = internAll(v.AllowedOperations)
	return &c
}
