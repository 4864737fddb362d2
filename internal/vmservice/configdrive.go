package vmservice

import (
	"context"
	"maps"

	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// The other_config keys of a config drive's VDI, besides TagUID and TagOwner.
const (
	// TagRole says what an operator's disk is for: RoleConfigDrive.
	TagRole = "xen-operator.io/role"
	// TagConfigHash is the hash of what the drive holds, set once it is
	// written: a drive without it was created and not (or not wholly)
	// written.
	TagConfigHash = "xen-operator.io/config-hash"
	// TagInstanceID is the drive's instance-id.
	TagInstanceID = "xen-operator.io/instance-id"
)

// RoleConfigDrive is the TagRole of a NoCloud config drive.
const RoleConfigDrive = "config-drive"

// ConfigDrives returns o's config drive VDIs (normally one; more only
// while a changed one replaces the old).
func ConfigDrives(c *cache.Cache, o Owner) []*xenapi.VDI {
	var out []*xenapi.VDI
	for _, vdi := range OwnedDisks(c, o) {
		if vdi.OtherConfig[TagRole] == RoleConfigDrive {
			out = append(out, vdi)
		}
	}
	return out
}

// CreateConfigDrive implements Service: an empty disk of size bytes on sr,
// tagged as o's config drive from its creation, so that a crash before it
// is written and attached leaves a disk the next reconcile finds.
func (x *XenAPI) CreateConfigDrive(ctx context.Context, vm *xenapi.VM, o Owner, sr *xenapi.SR, size int64) error {
	tags := map[string]string{TagUID: o.UID, TagOwner: o.Key(), TagRole: RoleConfigDrive}
	return x.createVDI(ctx, o, RoleConfigDrive, xenapi.VDISpec{
		NameLabel: vm.NameLabel + " config drive", NameDescription: "cloud-init NoCloud config drive (cidata) of XenVM " + o.Key(),
		SR: sr.Ref, VirtualSize: size, OtherConfig: tags,
	}, func(v *xenapi.VDI) bool {
		return v.OtherConfig[TagUID] == o.UID && v.OtherConfig[TagRole] == RoleConfigDrive
	})
}

// WriteConfigDrive implements Service: the image is written through xapi's
// import_raw_vdi handler, then the drive is tagged with its hash and
// instance-id (a crash in between writes it again).
func (x *XenAPI) WriteConfigDrive(ctx context.Context, vdi *xenapi.VDI, o Owner, image []byte, hash, instanceID string) error {
	if err := x.client.ImportRawVDI(ctx, vdi.Ref, image); err != nil {
		return err
	}
	want := maps.Clone(vdi.OtherConfig)
	want[TagConfigHash], want[TagInstanceID] = hash, instanceID
	if err := x.client.SetVDIOtherConfig(ctx, vdi.Ref, want); err != nil {
		return err
	}
	x.expect.add(o, shown(x.cache.VDIs, vdi.Ref, func(v *xenapi.VDI) bool { return v.OtherConfig[TagConfigHash] == hash }))
	return nil
}
