package vmservice

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// The other_config keys the operator tags the disks it creates with, besides
// TagUID and TagOwner.
const (
	// TagDisk is the disk's name in the XenVM's spec.disks.
	TagDisk = "xen-operator.io/disk"
	// TagDeletionPolicy is the disk's deletionPolicy, Delete or Retain: a
	// disk removed from the spec no longer says it.
	TagDeletionPolicy = "xen-operator.io/deletion-policy"
)

// PolicyRetain is the TagDeletionPolicy value that keeps a disk.
const PolicyRetain = "Retain"

// NIC is a network interface a VM should have.
type NIC struct {
	Device  string
	Network *xenapi.Network
	// MAC is the interface's MAC; "" lets xapi generate one.
	MAC string
}

// NewDisk is an extra disk to create for a VM.
type NewDisk struct {
	Name   string
	SR     *xenapi.SR
	Size   int64
	Policy string
}

// OwnedDisks returns the disks tagged for o.
func OwnedDisks(c *cache.Cache, o Owner) []*xenapi.VDI { return c.VDIs.ByIndex(indexUID, o.UID) }

// DiskTags is the other_config of a disk of o named name, with policy.
func DiskTags(current map[string]string, o Owner, name, policy string) map[string]string {
	out := maps.Clone(current)
	if out == nil {
		out = map[string]string{}
	}
	out[TagUID], out[TagOwner], out[TagDisk] = o.UID, o.Key(), name
	if policy == PolicyRetain {
		out[TagDeletionPolicy] = PolicyRetain
	} else {
		delete(out, TagDeletionPolicy)
	}
	return out
}

// untaggedDisk is a disk's other_config without the operator's tags.
func untaggedDisk(current map[string]string) map[string]string {
	out := maps.Clone(current)
	for _, k := range []string{TagUID, TagOwner, TagDisk, TagDeletionPolicy} {
		delete(out, k)
	}
	return out
}

// expectations are the writes this process made that the cache does not
// show yet, per owner: until they show (or expire), the owner's devices
// are not looked at again, so that nothing is created twice.
type expectations struct {
	mu      sync.Mutex
	pending map[string][]expectation
}

type expectation struct {
	shown    func() bool
	deadline time.Time
}

// deviceExpiry bounds how long a write the event stream has not shown
// holds its owner's devices back.
const deviceExpiry = 30 * time.Second

func (e *expectations) add(o Owner, shown func() bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pending == nil {
		e.pending = map[string][]expectation{}
	}
	e.pending[o.UID] = append(e.pending[o.UID], expectation{shown: shown, deadline: time.Now().Add(deviceExpiry)})
}

func (e *expectations) settled(o Owner) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	var left []expectation
	for _, x := range e.pending[o.UID] {
		if !x.shown() && now.Before(x.deadline) {
			left = append(left, x)
		}
	}
	if len(left) == 0 {
		delete(e.pending, o.UID)
		return true
	}
	e.pending[o.UID] = left
	return false
}

// Settled implements Service.
func (x *XenAPI) Settled(o Owner) bool { return x.expect.settled(o) }

// shown is an expectation met once the store shows ref, as want says when
// it is not nil.
func shown[T any](s *cache.Store[T], ref string, want func(T) bool) func() bool {
	return func() bool { v, ok := s.Get(ref); return ok && (want == nil || want(v)) }
}

func gone[T any](s *cache.Store[T], ref string) func() bool {
	return func() bool { _, ok := s.Get(ref); return !ok }
}

// CreateNIC implements Service.
// After a lost answer, xapi is asked first: a second VIF.create of the
// device would fail with DEVICE_ALREADY_EXISTS.
func (x *XenAPI) CreateNIC(ctx context.Context, vm *xenapi.VM, o Owner, nic NIC) error {
	what := "nic/" + nic.Device
	if found, err := lookFirst(x, o, what, x.cache.VIFs, func(string) (string, error) {
		now, err := x.client.VM(ctx, vm.Ref)
		if err != nil {
			return "", err
		}
		return refOf(ctx, now.VIFs, x.client.VIF, func(v *xenapi.VIF) bool { return v.Device == nic.Device })
	}); found || err != nil {
		return err
	}
	ref, err := x.client.CreateVIF(ctx, xenapi.VIFSpec{VM: vm.Ref, Network: nic.Network.Ref, Device: nic.Device, MAC: nic.MAC})
	if err != nil {
		x.doubt(o, what, "", err)
		return err
	}
	x.expect.add(o, shown(x.cache.VIFs, ref, nil))
	return nil
}

// MoveNIC implements Service.
func (x *XenAPI) MoveNIC(ctx context.Context, vif *xenapi.VIF, o Owner, network *xenapi.Network) error {
	if err := x.client.MoveVIF(ctx, vif.Ref, network.Ref); err != nil {
		return err
	}
	x.expect.add(o, shown(x.cache.VIFs, vif.Ref, func(v *xenapi.VIF) bool { return v.Network == network.Ref }))
	return nil
}

// RemoveNIC implements Service.
func (x *XenAPI) RemoveNIC(ctx context.Context, vif *xenapi.VIF, o Owner) error {
	if err := x.client.DestroyVIF(ctx, vif.Ref); err != nil && !xenapi.IsHandleInvalid(err) {
		return err
	}
	x.expect.add(o, gone(x.cache.VIFs, vif.Ref))
	return nil
}

// Plug implements Service.
func (x *XenAPI) Plug(ctx context.Context, device any, o Owner, plugged bool) error {
	switch d := device.(type) {
	case *xenapi.VIF:
		call := x.client.UnplugVIF
		if plugged {
			call = x.client.PlugVIF
		}
		if err := call(ctx, d.Ref); err != nil && !xenapi.IsDeviceAlreadyAttached(err) && !xenapi.IsDeviceAlreadyDetached(err) {
			return err
		}
		x.expect.add(o, shown(x.cache.VIFs, d.Ref, func(v *xenapi.VIF) bool { return v.CurrentlyAttached == plugged }))
	case *xenapi.VBD:
		call := x.client.UnplugVBD
		if plugged {
			call = x.client.PlugVBD
		}
		if err := call(ctx, d.Ref); err != nil && !xenapi.IsDeviceAlreadyAttached(err) && !xenapi.IsDeviceAlreadyDetached(err) {
			return err
		}
		x.expect.add(o, shown(x.cache.VBDs, d.Ref, func(v *xenapi.VBD) bool { return v.CurrentlyAttached == plugged }))
	}
	return nil
}

// CreateDisk implements Service. The disk carries o's tags from its
// creation: a crash before it is attached leaves a disk the next reconcile
// finds and attaches, never a second one.
func (x *XenAPI) CreateDisk(ctx context.Context, vm *xenapi.VM, o Owner, d NewDisk) error {
	return x.createVDI(ctx, o, "disk/"+d.Name, xenapi.VDISpec{
		NameLabel: vm.NameLabel + " " + d.Name, NameDescription: "Disk " + d.Name + " of XenVM " + o.Key(),
		SR: d.SR.Ref, VirtualSize: d.Size, OtherConfig: DiskTags(nil, o, d.Name, d.Policy),
	}, func(v *xenapi.VDI) bool { return v.OtherConfig[TagUID] == o.UID && v.OtherConfig[TagDisk] == d.Name })
}

// ErrEarlierCallRunning says a create is not made again yet: the call
// whose answer was lost may still be running in xapi.
var ErrEarlierCallRunning = errors.New("the earlier call, whose answer was lost, may still be running")

// createVDI creates a disk for o, unless o's last call creating it (what)
// lost its answer and xapi has it under its name (mine tells it from
// another's; a snapshot of a disk has its name and tags too).
func (x *XenAPI) createVDI(ctx context.Context, o Owner, what string, spec xenapi.VDISpec, mine func(*xenapi.VDI) bool) error {
	if found, err := lookFirst(x, o, what, x.cache.VDIs, func(name string) (string, error) {
		vdis, err := x.client.VDIsByName(ctx, name)
		if err != nil {
			return "", err
		}
		if i := slices.IndexFunc(vdis, func(v *xenapi.VDI) bool { return !v.IsSnapshot && v.SR == spec.SR && mine(v) }); i >= 0 {
			return vdis[i].Ref, nil
		}
		return "", nil
	}); found || err != nil {
		return err
	}
	ref, err := x.client.CreateVDI(ctx, spec)
	if err != nil {
		x.doubt(o, what, spec.NameLabel, err)
		return err
	}
	x.expect.add(o, shown(x.cache.VDIs, ref, nil))
	return nil
}

// AttachDisk implements Service. device "" lets xapi pick the lowest free
// device ("autodetect"), where a second VBD.create of the same disk would
// attach it twice: after a lost answer, xapi is asked first.
func (x *XenAPI) AttachDisk(ctx context.Context, vm *xenapi.VM, o Owner, vdi *xenapi.VDI, device string) error {
	what := "attach/" + vdi.Ref
	if found, err := lookFirst(x, o, what, x.cache.VBDs, func(string) (string, error) {
		now, err := x.client.VDI(ctx, vdi.Ref)
		if err != nil {
			return "", err
		}
		return refOf(ctx, now.VBDs, x.client.VBD, func(v *xenapi.VBD) bool { return v.VM == vm.Ref })
	}); found || err != nil {
		return err
	}
	if device == "" {
		device = "autodetect"
	}
	ref, err := x.client.CreateVBD(ctx, xenapi.VBDSpec{VM: vm.Ref, VDI: vdi.Ref, Userdevice: device})
	if err != nil {
		x.doubt(o, what, "", err)
		return err
	}
	x.expect.add(o, shown(x.cache.VBDs, ref, nil))
	return nil
}

// lookFirst begins a create of o's what: when the last such call lost its
// answer, find (given what that call's doubt searches for) asks xapi for
// the ref the call may have made, and a ref found is awaited in store
// instead of made again.
func lookFirst[T any](x *XenAPI, o Owner, what string, store *cache.Store[T], find func(seek string) (string, error)) (bool, error) {
	seek, ok := x.doubted(o, what)
	if !ok {
		return false, nil
	}
	ref, err := find(seek)
	if err != nil {
		return false, err
	}
	x.resolved(o, what)
	if ref == "" {
		return false, nil
	}
	x.expect.add(o, shown(store, ref, nil))
	return true, nil
}

// refOf asks xapi for the records of refs and returns the first that
// matches ("" for none); one gone meanwhile is skipped.
func refOf[T any](ctx context.Context, refs []string, get func(context.Context, string) (T, error), match func(T) bool) (string, error) {
	for _, ref := range refs {
		rec, err := get(ctx, ref)
		if xenapi.IsHandleInvalid(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		if match(rec) {
			return ref, nil
		}
	}
	return "", nil
}

// DetachDisk implements Service.
func (x *XenAPI) DetachDisk(ctx context.Context, vbd *xenapi.VBD, o Owner) error {
	if err := x.client.DestroyVBD(ctx, vbd.Ref); err != nil && !xenapi.IsHandleInvalid(err) {
		return err
	}
	x.expect.add(o, gone(x.cache.VBDs, vbd.Ref))
	return nil
}

// DropDisk implements Service: a disk no VM uses any more is destroyed, or
// kept without the operator's tags when its policy is Retain or another VM
// uses it.
func (x *XenAPI) DropDisk(ctx context.Context, vdi *xenapi.VDI, o Owner) error {
	shared := slices.ContainsFunc(vdi.VBDs, func(ref string) bool { _, ok := x.cache.VBDs.Get(ref); return ok })
	if shared || vdi.OtherConfig[TagDeletionPolicy] == PolicyRetain {
		want := untaggedDisk(vdi.OtherConfig)
		if err := x.client.SetVDIOtherConfig(ctx, vdi.Ref, want); err != nil && !xenapi.IsHandleInvalid(err) {
			return err
		}
		x.expect.add(o, shown(x.cache.VDIs, vdi.Ref, func(v *xenapi.VDI) bool { return v.OtherConfig[TagUID] == "" }))
		return nil
	}
	if err := x.client.DestroyVDI(ctx, vdi.Ref); err != nil && !xenapi.IsHandleInvalid(err) {
		return err
	}
	x.expect.add(o, gone(x.cache.VDIs, vdi.Ref))
	return nil
}

// TagDisk implements Service.
func (x *XenAPI) TagDisk(ctx context.Context, vdi *xenapi.VDI, o Owner, name, policy string) error {
	want := DiskTags(vdi.OtherConfig, o, name, policy)
	if err := x.client.SetVDIOtherConfig(ctx, vdi.Ref, want); err != nil {
		return err
	}
	x.expect.add(o, shown(x.cache.VDIs, vdi.Ref, func(v *xenapi.VDI) bool { return maps.Equal(v.OtherConfig, want) }))
	return nil
}

// GrowDisk implements Service.
func (x *XenAPI) GrowDisk(ctx context.Context, vdi *xenapi.VDI, o Owner, size int64, online bool) error {
	call := x.client.ResizeVDI
	if online {
		call = x.client.ResizeVDIOnline
	}
	if err := call(ctx, vdi.Ref, size); err != nil {
		return err
	}
	x.expect.add(o, shown(x.cache.VDIs, vdi.Ref, func(v *xenapi.VDI) bool { return v.VirtualSize >= size }))
	return nil
}

// DeviceNumber parses a VIF or VBD device ("0", "1"...); -1 when it is not
// a number.
func DeviceNumber(s string) int32 {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 0 {
		return -1
	}
	return int32(n)
}
