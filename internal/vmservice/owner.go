// Package vmservice is the one seam between the reconcilers and XenAPI: the
// domain operations the controllers need (install from a template,
// configure, power operations, destroy with disks, host maintenance), each
// the sequence of calls xapi's own clients make, behind a narrow interface.
// It also owns how the operator marks its VMs in xapi (other_config tags and
// the install name) and the lookups that follow from them.
//
// Reads come from the pool's cache (internal/xenapi/cache); writes go
// through the Service, which tells the cache what it wrote so that a
// reconcile running before the write's event sees it. Nothing here knows
// Kubernetes objects or conditions.
package vmservice

import (
	"maps"
	"slices"
	"strings"

	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// The other_config keys the operator tags its VMs with.
const (
	TagUID   = "xen-operator.io/uid"
	TagOwner = "xen-operator.io/owner"
	// TagManagedKeys lists the spec.otherConfig keys the operator set, so
	// that keys removed from the spec are removed from the VM.
	TagManagedKeys = "xen-operator.io/managed-keys"
)

// installPrefix starts the name a VM gets at clone time, before it is
// tagged: a crash between clone and tag leaves a VM the next reconcile finds
// by name.
const installPrefix = "xen-operator-install-"

// The cache indexes this package adds.
const (
	indexUID     = "operator.uid"
	indexInstall = "operator.install"
)

// Owner is the object a VM belongs to (for the operator, a XenVM).
type Owner struct {
	UID       string
	Namespace string
	Name      string
}

// Key is the owner's namespace/name, as the cache wakes owners by.
func (o Owner) Key() string { return o.Namespace + "/" + o.Name }

// InstallName is the name a VM has between its clone and its tag.
func (o Owner) InstallName() string { return installPrefix + o.UID }

// OwnerKey is the key of the owner a VM's tag names, "" for an untagged VM.
func OwnerKey(vm *xenapi.VM) string { return vm.OtherConfig[TagOwner] }

// CacheOptions are the cache options the service's lookups need: the tag
// and install-name indexes and the owners to wake (by tag, or by
// observers). wake receives owner keys.
func CacheOptions(wake func(owner string), observers *Observers) cache.Options {
	return cache.Options{
		VMIndexes: map[string]cache.IndexFunc[*xenapi.VM]{
			indexUID: func(vm *xenapi.VM) []string {
				if uid := vm.OtherConfig[TagUID]; uid != "" {
					return []string{uid}
				}
				return nil
			},
			indexSnapshot: snapshotIndex,
			indexInstall: func(vm *xenapi.VM) []string {
				if uid, ok := strings.CutPrefix(vm.NameLabel, installPrefix); ok {
					return []string{uid}
				}
				return nil
			},
		},
		VDIIndexes: map[string]cache.IndexFunc[*xenapi.VDI]{
			indexUID: func(vdi *xenapi.VDI) []string {
				// A snapshot's disk copies its disk's tags: it is the
				// snapshot's, not one of the VM's disks.
				if uid := vdi.OtherConfig[TagUID]; uid != "" && !vdi.IsSnapshot {
					return []string{uid}
				}
				return nil
			},
		},
		OwnerOf: observers.ownerOf,
		OwnerOfVDI: func(vdi *xenapi.VDI) string {
			if vdi.IsSnapshot {
				return ""
			}
			return vdi.OtherConfig[TagOwner]
		},
		Wake: wake,
	}
}

// Owned returns the VMs of an owner as this process knows them: tagged with
// its UID or named with its install name, templates included (a clone not
// provisioned yet). Normally one; more after a crash raced an install.
func Owned(c *cache.Cache, o Owner) []*xenapi.VM {
	// The expectation first: the cache drops it after it stored the clone,
	// so read before the indexes it is there or the indexes show the VM.
	// Read after them, a clone stored in between would be in neither.
	// Then the indexes in the order a VM moves through them: its install
	// name (the clone), both (tagged), its tag alone (renamed). Read the
	// other way round, one record that brought the tag and the new name
	// together between the two reads would be in neither.
	ref, expected := c.Expected(o.InstallName())
	byRef := map[string]*xenapi.VM{}
	for _, index := range []string{indexInstall, indexUID} {
		for _, vm := range c.VMsByIndex(index, o.UID) {
			if !vm.IsSnapshot && !vm.IsControlDomain {
				byRef[vm.Ref] = vm
			}
		}
	}
	if expected {
		if _, known := byRef[ref]; !known {
			byRef[ref] = &xenapi.VM{Ref: ref, NameLabel: o.InstallName(), IsTemplate: true}
		}
	}
	return slices.SortedFunc(maps.Values(byRef), func(a, b *xenapi.VM) int { return strings.Compare(a.Ref, b.Ref) })
}

// ByUUID returns the VM with a UUID, as this process knows it.
func ByUUID(c *cache.Cache, uuid string) (*xenapi.VM, bool) {
	if uuid == "" {
		return nil, false
	}
	vms := c.VMsByIndex(cache.IndexUUID, uuid)
	if len(vms) == 0 {
		return nil, false
	}
	return vms[0], true
}

// Templates returns the templates whose name_label or UUID is nameOrUUID;
// a UUID match wins over names.
func Templates(c *cache.Cache, nameOrUUID string) []*xenapi.VM {
	tmpls := c.VMsByIndex(cache.IndexTemplate, nameOrUUID)
	for _, t := range tmpls {
		if t.UUID == nameOrUUID {
			return []*xenapi.VM{t}
		}
	}
	return tmpls
}

// Pending reports a VM known only from this process's clone call: the cache
// has not seen it yet (Owned returns a placeholder with its ref).
func Pending(vm *xenapi.VM) bool { return vm.UUID == "" }

// HostByNameOrUUID finds a host by name_label, hostname or UUID.
func HostByNameOrUUID(c *cache.Cache, s string) (*xenapi.Host, bool) {
	for _, h := range c.Hosts.List() {
		if h.UUID == s || h.NameLabel == s || h.Hostname == s {
			return h, true
		}
	}
	return nil, false
}

// Installed tells whether an install is complete: provisioned (no longer a
// template, no disks left to create) and tagged for o.
func Installed(vm *xenapi.VM, o Owner) bool {
	return !vm.IsTemplate && vm.OtherConfig["disks"] == "" && vm.OtherConfig[TagUID] == o.UID
}

// Claimed tells whether a VM carries o's tag and its provision disks are
// as plan says.
func Claimed(vm *xenapi.VM, o Owner, plan DiskPlan) bool {
	disks := vm.OtherConfig["disks"]
	return vm.OtherConfig[TagUID] == o.UID && !strings.Contains(disks, `sr=""`) && plan.Rewrite(disks) == disks
}

// NeedsClaim tells whether Claim has work to do on vm: it lacks o's tag,
// or its provision disks are not as plan says.
func NeedsClaim(vm *xenapi.VM, o Owner, plan DiskPlan) bool {
	disks := vm.OtherConfig["disks"]
	return vm.OtherConfig[TagUID] != o.UID || plan.Rewrite(disks) != disks
}

// DesiredOtherConfig is a VM's other_config with entries (the user's), the
// owner's tags, and the provision disks rewritten by plan. Keys the
// operator set before and entries no longer has are removed.
func DesiredOtherConfig(current, entries map[string]string, o Owner, plan DiskPlan) map[string]string {
	out := maps.Clone(current)
	if out == nil {
		out = map[string]string{}
	}
	for _, k := range strings.Split(current[TagManagedKeys], ",") {
		if _, keep := entries[k]; k != "" && !keep {
			delete(out, k)
		}
	}
	maps.Copy(out, entries)
	if keys := slices.Sorted(maps.Keys(entries)); len(keys) > 0 {
		out[TagManagedKeys] = strings.Join(keys, ",")
	} else {
		delete(out, TagManagedKeys)
	}
	out[TagUID] = o.UID
	out[TagOwner] = o.Key()
	delete(out, TagSnapshotUID) // a revert copies the snapshot's tags back
	delete(out, TagSnapshotOwner)
	if disks, ok := out["disks"]; ok {
		out["disks"] = plan.Rewrite(disks)
	}
	return out
}

// Untagged is a VM's other_config without the operator's tags.
func Untagged(current map[string]string) map[string]string {
	out := maps.Clone(current)
	delete(out, TagUID)
	delete(out, TagOwner)
	delete(out, TagManagedKeys)
	return out
}
