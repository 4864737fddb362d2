package vmservice

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// The other_config keys the operator tags its snapshots with: the UID and
// namespace/name of the XenVMSnapshot a snapshot belongs to. A snapshot
// also keeps the tags of its VM (xapi copies other_config into it, and a
// revert copies it back), so the VM's own lookups skip snapshots, and the
// VM sheds these keys when a revert brought them back.
const (
	TagSnapshotUID   = "xen-operator.io/snapshot-uid"
	TagSnapshotOwner = "xen-operator.io/snapshot-owner"
)

// snapshotPrefix starts the name a snapshot is taken under, before it is
// tagged: a crash between the snapshot and its tag leaves a snapshot the
// next reconcile finds by name instead of taking a second one.
const snapshotPrefix = "xen-operator-snapshot-"

// The cache index of snapshots by owner UID (tag or snapshot name).
const indexSnapshot = "operator.snapshot"

// SnapshotName is the name a snapshot has between its creation and its tag.
func (o Owner) SnapshotName() string { return snapshotPrefix + o.UID }

// snapshotIndex indexes snapshots by the UID of the owner they belong to.
func snapshotIndex(vm *xenapi.VM) []string {
	if !vm.IsSnapshot {
		return nil
	}
	if uid := vm.OtherConfig[TagSnapshotUID]; uid != "" {
		return []string{uid}
	}
	if uid, ok := strings.CutPrefix(vm.NameLabel, snapshotPrefix); ok {
		return []string{uid}
	}
	return nil
}

// snapshotOwnerKey is the wake key of a snapshot's owner, "" for others.
func snapshotOwnerKey(vm *xenapi.VM) string {
	if !vm.IsSnapshot || vm.OtherConfig[TagSnapshotOwner] == "" {
		return ""
	}
	return SnapshotWakePrefix + vm.OtherConfig[TagSnapshotOwner]
}

// SnapshotWakePrefix starts the wake keys of snapshot owners, to tell them
// from the VMs' owners.
const SnapshotWakePrefix = "snapshot:"

// SnapshotOf returns the snapshot of an owner as this process knows it:
// tagged with its UID, or named with its snapshot name, or only known from
// the call that took it (a placeholder with its ref).
func SnapshotOf(c *cache.Cache, o Owner) (*xenapi.VM, bool) {
	ref, expected := c.Expected(o.SnapshotName()) // first: see Owned
	for _, vm := range c.VMsByIndex(indexSnapshot, o.UID) {
		return vm, true
	}
	if expected {
		return &xenapi.VM{Ref: ref, NameLabel: o.SnapshotName(), IsSnapshot: true, IsTemplate: true}, true
	}
	return nil, false
}

// SnapshotClaimed tells whether a snapshot carries o's tags and name.
func SnapshotClaimed(snap *xenapi.VM, o Owner, name string) bool {
	return snap.OtherConfig[TagSnapshotUID] == o.UID && snap.OtherConfig[TagSnapshotOwner] == o.Key() &&
		snap.NameLabel == name
}

// SnapshotRequest is what TakeSnapshot takes.
type SnapshotRequest struct {
	// Memory takes a checkpoint (disks and memory of a running VM).
	Memory bool
}

// TakeSnapshot implements Service: VM.snapshot (or VM.checkpoint) under
// o's snapshot name, as an Async task. The cache shows the snapshot once
// its event arrives; until then SnapshotOf returns a placeholder.
func (x *XenAPI) TakeSnapshot(ctx context.Context, vm *xenapi.VM, o Owner, req SnapshotRequest) (string, error) {
	name := o.SnapshotName()
	if _, ok := x.doubted(o, doubtSnapshot); ok {
		// The last call may have snapshotted although its answer was lost.
		vms, err := x.client.VMsByName(ctx, name)
		if err != nil {
			return "", err
		}
		if i := slices.IndexFunc(vms, func(v *xenapi.VM) bool { return v.IsSnapshot && v.SnapshotOf == vm.Ref }); i >= 0 {
			x.resolved(o, doubtSnapshot)
			x.cache.ExpectVM(name, vms[i].Ref, SnapshotWakePrefix+o.Key())
			return vms[i].Ref, nil
		}
		// A snapshot takes a while: the lost call's task may still run.
		now, err := x.client.VM(ctx, vm.Ref)
		if err != nil {
			return "", err
		}
		for _, op := range now.CurrentOperations {
			if op == "snapshot" || op == "checkpoint" {
				return "", fmt.Errorf("%w: VM %s is still taking a snapshot (%s)", ErrEarlierCallRunning, vm.UUID, op)
			}
		}
		x.resolved(o, doubtSnapshot)
	}
	take := x.client.SnapshotVM
	if req.Memory {
		take = x.client.CheckpointVM
	}
	ref, err := take(ctx, vm.Ref, name)
	if err != nil {
		x.doubt(o, doubtSnapshot, name, err)
		return "", err
	}
	x.cache.ExpectVM(name, ref, SnapshotWakePrefix+o.Key())
	return ref, nil
}

// ClaimSnapshot implements Service: the snapshot's tags (added to the
// other_config it copied from its VM), then its name and description.
func (x *XenAPI) ClaimSnapshot(ctx context.Context, snap *xenapi.VM, o Owner, name, description string) error {
	for _, kv := range [][2]string{{TagSnapshotUID, o.UID}, {TagSnapshotOwner, o.Key()}} {
		if snap.OtherConfig[kv[0]] == kv[1] {
			continue
		}
		err := x.client.AddToVMOtherConfig(ctx, snap.Ref, kv[0], kv[1])
		if xenapi.CodeOf(err) == xenapi.CodeMapDuplicateKey {
			// Tagged by an earlier attempt whose answer was lost (the
			// snapshot name says it is o's): set it.
			if err = x.client.RemoveFromVMOtherConfig(ctx, snap.Ref, kv[0]); err == nil {
				err = x.client.AddToVMOtherConfig(ctx, snap.Ref, kv[0], kv[1])
			}
		}
		if err != nil {
			return err
		}
	}
	if snap.NameLabel != name {
		if err := x.client.SetVMNameLabel(ctx, snap.Ref, name); err != nil {
			return err
		}
	}
	if description != "" && snap.NameDescription != description {
		if err := x.client.SetVMNameDescription(ctx, snap.Ref, description); err != nil {
			return err
		}
	}
	x.cache.AssumeVM(snap.Ref, func(v *xenapi.VM) {
		if v.OtherConfig == nil {
			v.OtherConfig = map[string]string{}
		}
		v.OtherConfig[TagSnapshotUID], v.OtherConfig[TagSnapshotOwner] = o.UID, o.Key()
		v.NameLabel = name
		if description != "" {
			v.NameDescription = description
		}
	}, cache.FieldOtherConfig, cache.FieldNameLabel)
	return nil
}

// DestroySnapshot implements Service: the snapshot with its disks (a
// snapshot's disks are its own, whatever policy the VM's disks carry).
func (x *XenAPI) DestroySnapshot(ctx context.Context, snap *xenapi.VM) error {
	rec, err := x.client.VM(ctx, snap.Ref)
	if xenapi.IsHandleInvalid(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return x.destroyWithDisks(ctx, rec)
}

// ReleaseSnapshot implements Service: the snapshot loses its owner's tags
// and stays.
func (x *XenAPI) ReleaseSnapshot(ctx context.Context, snap *xenapi.VM) error {
	for _, k := range []string{TagSnapshotUID, TagSnapshotOwner} {
		if _, ok := snap.OtherConfig[k]; !ok {
			continue
		}
		if err := x.client.RemoveFromVMOtherConfig(ctx, snap.Ref, k); err != nil && !xenapi.IsHandleInvalid(err) {
			return err
		}
	}
	return nil
}

// SnapshotSize is the space a snapshot's disks take, as the cache shows it.
func SnapshotSize(c *cache.Cache, snap *xenapi.VM) int64 {
	var size int64
	for _, vbd := range c.VBDsOf(snap) {
		if vdi, ok := c.VDIs.Get(vbd.VDI); ok && vbd.Type == "Disk" {
			size += vdi.PhysicalUtilisation
		}
	}
	if vdi, ok := c.VDIs.Get(snap.SuspendVDI); ok {
		size += vdi.PhysicalUtilisation
	}
	return size
}

// BeginRevert implements Service: VM.revert of a snapshot, as a task.
func (x *XenAPI) BeginRevert(ctx context.Context, snap *xenapi.VM) (string, error) {
	return x.client.Begin(ctx, "VM.revert", snap.Ref)
}

// CanBootOn implements Service: nil, or xapi's reason the VM could not run
// on host.
func (x *XenAPI) CanBootOn(ctx context.Context, vm *xenapi.VM, host *xenapi.Host) error {
	return x.client.AssertCanBootHere(ctx, vm.Ref, host.Ref)
}

// BeginMigrate implements Service: VM.pool_migrate, live, as a task.
func (x *XenAPI) BeginMigrate(ctx context.Context, vm *xenapi.VM, host *xenapi.Host) (string, error) {
	return x.client.Begin(ctx, "VM.pool_migrate", vm.Ref, host.Ref, map[string]string{"live": "true"})
}

// BeginEvacuate implements Service: host.evacuate as a task, so that no
// worker waits for it.
func (x *XenAPI) BeginEvacuate(ctx context.Context, host *xenapi.Host) (string, error) {
	return x.client.Begin(ctx, "host.evacuate", host.Ref)
}
