package controller

import (
	"cmp"
	"context"
	"slices"
	"strconv"

	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// vmDisks is what the VM has of the spec's disks: each disk's VDI and the
// VM's VBD of it (nil when not attached), by name; root is the template's
// bootable disk.
type vmDisks struct {
	vdis map[string]*xenapi.VDI
	vbds map[string]*xenapi.VBD
}

// disksOf reads the VM's disks from the cache: root (the bootable disk
// VBD, else the lowest device) and the disks tagged for the owner, attached
// or not.
func (r *XenVMReconciler) disksOf(s *vmScope) vmDisks {
	c := s.conn.Cache
	d := vmDisks{vdis: map[string]*xenapi.VDI{}, vbds: map[string]*xenapi.VBD{}}
	var disks []*xenapi.VBD
	for _, vbd := range c.VBDsOf(s.vm) {
		if vbd.Type == "Disk" && !vbd.Empty && vbd.VDI != "" {
			disks = append(disks, vbd)
		}
	}
	slices.SortFunc(disks, func(a, b *xenapi.VBD) int {
		return cmp.Compare(vmservice.DeviceNumber(a.Userdevice), vmservice.DeviceNumber(b.Userdevice))
	})
	if i := slices.IndexFunc(disks, func(v *xenapi.VBD) bool { return v.Bootable }); i >= 0 {
		disks[0], disks[i] = disks[i], disks[0]
	}
	if len(disks) > 0 {
		if vdi, ok := c.VDIs.Get(disks[0].VDI); ok {
			d.vdis[virtv1alpha1.RootDiskName], d.vbds[virtv1alpha1.RootDiskName] = vdi, disks[0]
		}
	}
	for _, vdi := range vmservice.OwnedDisks(c, s.owner) {
		name := vdi.OtherConfig[vmservice.TagDisk]
		if name == "" || name == virtv1alpha1.RootDiskName {
			continue
		}
		d.vdis[name] = vdi
		if i := slices.IndexFunc(disks, func(v *xenapi.VBD) bool { return v.VDI == vdi.Ref }); i >= 0 {
			d.vbds[name] = disks[i]
		}
	}
	return d
}

// reconcileDisks makes the VM's disks those of spec.disks, one step per
// disk per reconcile; it owns DisksSynced.
func (r *XenVMReconciler) reconcileDisks(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if s.vm == nil || len(s.vm.CurrentOperations) > 0 {
		return ctrl.Result{}, nil
	}
	// Settled before the stores are read: an expectation is met once the
	// store shows its device, so asked after the read it could be met by a
	// disk the read missed, and the disk would be created again.
	settled := s.conn.Service.Settled(s.owner)
	have := r.disksOf(s)
	if len(s.obj.Spec.Disks) == 0 && len(have.vdis) <= 1 {
		return ctrl.Result{}, nil // nothing declared, nothing of ours to remove
	}
	if !settled {
		return s.awaitOwnWrites()
	}
	existing := map[string]*xenapi.SR{}
	for name, vdi := range have.vdis {
		if sr, ok := s.conn.Cache.SRs.Get(vdi.SR); ok {
			existing[name] = sr
		}
	}
	storage, p := planStorage(s.conn.Cache, s.obj, existing, "")
	if p != nil {
		r.storageProblem(s, p)
		return ctrl.Result{RequeueAfter: requeuePoolProblem}, nil
	}
	var waiting []string
	more := false
	for _, name := range diskNames(s.obj, have) {
		step, err := r.diskStep(ctx, s, name, have, storage)
		if err != nil {
			return r.fail(s, virtv1alpha1.ConditionDisksSynced, reasonForDisk(err, virtv1alpha1.ReasonConfigurationFailed),
				"disk "+name, err)
		}
		switch step {
		case diskWrote:
			more = true
		case diskWaits:
			waiting = append(waiting, "disk "+name)
		}
	}
	return r.devicesDone(s, virtv1alpha1.ConditionDisksSynced, more, waiting, "The VM's disks are as the spec says")
}

// diskNames are the disks to look at: the spec's and those the VM has.
func diskNames(obj *virtv1alpha1.XenVM, have vmDisks) []string {
	var names []string
	for _, d := range obj.Spec.Disks {
		names = append(names, d.Name)
	}
	for name := range have.vdis {
		if !slices.Contains(names, name) && name != virtv1alpha1.RootDiskName {
			names = append(names, name)
		}
	}
	return names
}

type diskResult int

const (
	diskInSync diskResult = iota
	// diskWrote: a write after which the disk needs another step.
	diskWrote
	// diskDone: a write that makes the disk as the spec says.
	diskDone
	diskWaits
)

// diskStep takes the next step for one disk.
func (r *XenVMReconciler) diskStep(ctx context.Context, s *vmScope, name string, have vmDisks, storage storagePlan) (diskResult, error) {
	spec := specDisk(s.obj, name)
	vdi, vbd := have.vdis[name], have.vbds[name]
	svc, power := s.conn.Service, s.vm.PowerState
	running := power == xenapi.PowerStateRunning
	if power != xenapi.PowerStateHalted && !running {
		if spec == nil || vdi == nil || vbd == nil || spec.SizeBytes() > vdi.VirtualSize {
			return diskWaits, nil // paused or suspended: disks change at the next halt
		}
		return diskInSync, nil
	}
	switch {
	case spec == nil && vbd != nil && running && vbd.CurrentlyAttached:
		return r.unplugDisk(ctx, s, vbd)
	case spec == nil && vbd != nil:
		return diskWrote, svc.DetachDisk(ctx, vbd, s.owner)
	case spec == nil:
		return diskDone, svc.DropDisk(ctx, vdi, s.owner)
	case vdi == nil && name == virtv1alpha1.RootDiskName:
		return diskInSync, nil // a template without disks
	case vdi == nil:
		ctrl.LoggerFrom(ctx).Info("Creating disk", "name", name, "sr", storage.srs[name].NameLabel)
		return diskWrote, svc.CreateDisk(ctx, s.vm, s.owner, vmservice.NewDisk{Name: name, SR: storage.srs[name],
			Size: spec.SizeBytes(), Policy: string(spec.DeletionPolicy)})
	case vbd == nil:
		device := ""
		if spec.Device != nil {
			device = strconv.Itoa(int(*spec.Device))
		}
		step := diskDone
		if running {
			step = diskWrote // plugged next
		}
		return step, svc.AttachDisk(ctx, s.vm, s.owner, vdi, device)
	case running && !vbd.CurrentlyAttached:
		if !vbd.Allows("plug") {
			return diskWaits, nil
		}
		return diskDone, svc.Plug(ctx, vbd, s.owner, true)
	}
	return r.diskSettings(ctx, s, spec, vdi, vbd)
}

// diskSettings grows a disk and keeps its deletion policy.
func (r *XenVMReconciler) diskSettings(ctx context.Context, s *vmScope, spec *virtv1alpha1.Disk, vdi *xenapi.VDI, vbd *xenapi.VBD) (diskResult, error) {
	svc := s.conn.Service
	if spec.SizeBytes() > vdi.VirtualSize {
		attached := s.vm.PowerState == xenapi.PowerStateRunning && vbd.CurrentlyAttached
		if attached && !vdi.Allows("resize_online") {
			return diskWaits, nil
		}
		ctrl.LoggerFrom(ctx).Info("Growing disk", "name", spec.Name, "from", vdi.VirtualSize, "to", spec.SizeBytes())
		return diskDone, svc.GrowDisk(ctx, vdi, s.owner, spec.SizeBytes(), attached)
	}
	retain := spec.DeletionPolicy == virtv1alpha1.DeletionPolicyRetain
	tagged := vdi.OtherConfig[vmservice.TagDeletionPolicy] == vmservice.PolicyRetain
	if retain != tagged || spec.Name != virtv1alpha1.RootDiskName && vdi.OtherConfig[vmservice.TagDisk] != spec.Name {
		return diskDone, svc.TagDisk(ctx, vdi, s.owner, spec.Name, string(spec.DeletionPolicy))
	}
	return diskInSync, nil
}

// unplugDisk unplugs a disk leaving a running VM, where the guest can.
func (r *XenVMReconciler) unplugDisk(ctx context.Context, s *vmScope, vbd *xenapi.VBD) (diskResult, error) {
	if !vbd.Allows("unplug") {
		return diskWaits, nil
	}
	return diskWrote, s.conn.Service.Plug(ctx, vbd, s.owner, false)
}

// reasonForDisk is the condition reason of a failed disk operation.
func reasonForDisk(err error, otherwise string) string {
	switch {
	case xenapi.IsSRFull(err):
		return virtv1alpha1.ReasonStorageFull
	case xenapi.IsSROperationNotSupported(err):
		return virtv1alpha1.ReasonStorageNotSuitable
	}
	return otherwise
}
