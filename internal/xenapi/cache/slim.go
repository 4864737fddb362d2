package cache

import (
	"github.com/xen-operator/xen-operator/internal/intern"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// What the cache keeps of a record is what its readers use, with the
// values that repeat from record to record (refs of the hosts, networks and
// SRs, power states, operation names, the template's other_config that
// every clone copies) stored once. Records come from the event stream,
// which may hand the same record to other subscribers: they are copied,
// never changed.

// slimVM drops allowed_operations (no reader uses a VM's) and shares the
// repeated values.
func slimVM(vm *xenapi.VM) *xenapi.VM {
	if vm == nil {
		return nil
	}
	c := *vm
	c.PowerState = xenapi.PowerState(intern.String(string(vm.PowerState)))
	c.ResidentOn, c.Affinity, c.DomainType = intern.String(vm.ResidentOn), intern.String(vm.Affinity), intern.String(vm.DomainType)
	c.NameDescription = intern.String(vm.NameDescription)
	c.OtherConfig = intern.Map(vm.OtherConfig)
	c.BlockedOperations = intern.Map(vm.BlockedOperations)
	c.CurrentOperations = intern.Map(vm.CurrentOperations)
	c.AllowedOperations = nil
	c.Tags = intern.Strings(vm.Tags)
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
	c.Type, c.Mode, c.Userdevice = intern.String(v.Type), intern.String(v.Mode), intern.String(v.Userdevice)
	c.AllowedOperations = intern.Strings(v.AllowedOperations)
	return &c
}

func slimVIF(v *xenapi.VIF) *xenapi.VIF {
	if v == nil {
		return nil
	}
	c := *v
	c.Network, c.Device = intern.String(v.Network), intern.String(v.Device)
	c.AllowedOperations = intern.Strings(v.AllowedOperations)
	return &c
}

func slimVDI(v *xenapi.VDI) *xenapi.VDI {
	if v == nil {
		return nil
	}
	c := *v
	c.SR, c.Type, c.NameLabel = intern.String(v.SR), intern.String(v.Type), intern.String(v.NameLabel)
	c.OtherConfig = intern.Map(v.OtherConfig)
	c.AllowedOperations = intern.Strings(v.AllowedOperations)
	return &c
}
