package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/configdrive"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// indexDataSecrets indexes XenVMs by the Secrets spec.cloudInit names.
const indexDataSecrets = "spec.cloudInit.secretRefs" //nolint:gosec // a field index name, not a credential

// dataSecrets are the Secrets a XenVM's cloudInit names.
func dataSecrets(obj *virtv1alpha1.XenVM) []string {
	ci := obj.Spec.CloudInit
	if ci == nil {
		return nil
	}
	var out []string
	for _, ref := range []*virtv1alpha1.DataSecretKeyReference{ci.UserDataSecretRef, ci.NetworkConfigSecretRef} {
		if ref != nil {
			out = append(out, ref.Name)
		}
	}
	return out
}

// bootstrapProblem is why the config drive cannot be built: a condition
// reason and message.
type bootstrapProblem struct{ reason, msg string }

func (p *bootstrapProblem) Error() string { return p.msg }

// readData reads one of cloudInit's values: inline, or a Secret's key, read
// from the API server once per version of the Secret (no Secret's data is
// cached in an informer).
func (r *XenVMReconciler) readData(ctx context.Context, ns, inline string, ref *virtv1alpha1.DataSecretKeyReference) ([]byte, error) {
	if ref == nil {
		return []byte(inline), nil
	}
	secret, err := r.Conns.Secrets.Data(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name})
	switch {
	case apierrors.IsNotFound(err):
		return nil, &bootstrapProblem{virtv1alpha1.ReasonDataSecretNotFound, fmt.Sprintf("Secret %s not found", ref.Name)}
	case err != nil:
		return nil, err
	}
	data, ok := secret[ref.Key]
	if !ok {
		return nil, &bootstrapProblem{virtv1alpha1.ReasonDataSecretKeyNotFound, fmt.Sprintf("Secret %s has no key %q", ref.Name, ref.Key)}
	}
	return data, nil
}

// cloudInitFiles are the files the VM's config drive holds, instance-id
// left out (see instanceID).
func (r *XenVMReconciler) cloudInitFiles(ctx context.Context, s *vmScope) (configdrive.Files, error) {
	ci := s.obj.Spec.CloudInit
	user, err := r.readData(ctx, s.obj.Namespace, ci.UserData, ci.UserDataSecretRef)
	if err != nil {
		return configdrive.Files{}, err
	}
	network, err := r.readData(ctx, s.obj.Namespace, ci.NetworkConfig, ci.NetworkConfigSecretRef)
	if err != nil {
		return configdrive.Files{}, err
	}
	meta := map[string]string{"local-hostname": s.obj.Name}
	maps.Copy(meta, ci.MetaData)
	return configdrive.Files{MetaData: meta, UserData: user, NetworkConfig: network}, nil
}

// instanceID is the drive's instance-id: the spec's, else the VM's UUID for
// its first drive, else the UUID and the content's hash, so that cloud-init
// applies a changed drive at the next boot.
func instanceID(s *vmScope, hash string, old *xenapi.VDI) string {
	if id := s.obj.Spec.CloudInit.MetaData["instance-id"]; id != "" {
		return id
	}
	if old != nil && old.OtherConfig[vmservice.TagConfigHash] == hash {
		return old.OtherConfig[vmservice.TagInstanceID]
	}
	st := s.obj.Status.CloudInit
	switch {
	case st != nil && st.Hash == hash && st.InstanceID != "":
		return st.InstanceID
	case st == nil && (old == nil || old.OtherConfig[vmservice.TagConfigHash] == ""):
		return s.vm.UUID // the VM's first drive (created, perhaps not written yet)
	}
	return s.vm.UUID + "-" + hash[:8]
}

// reconcileBootstrap gives the VM the config drive spec.cloudInit
// describes, before its first start; it owns BootstrapReady. Each step is
// found again after a crash from the drive's tags: created (no hash),
// written (its hash), attached.
func (r *XenVMReconciler) reconcileBootstrap(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if s.vm == nil || len(s.vm.CurrentOperations) > 0 {
		return ctrl.Result{}, nil
	}
	settled := s.conn.Service.Settled(s.owner) // before the stores: see reconcileDisks
	drives := vmservice.ConfigDrives(s.conn.Cache, s.owner)
	if s.obj.Spec.CloudInit == nil && len(drives) == 0 {
		s.obj.Status.CloudInit = nil
		return ctrl.Result{}, nil
	}
	if !settled {
		return s.awaitOwnWrites()
	}
	want, hash, err := r.desiredDrive(ctx, s)
	var p *bootstrapProblem
	switch {
	case errors.As(err, &p):
		s.failed = true
		s.stop()
		s.cond(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionFalse, p.reason, "%s", p.msg)
		return ctrl.Result{RequeueAfter: requeuePoolProblem}, nil // the Secret's change wakes the XenVM
	case err != nil:
		return ctrl.Result{}, err
	}
	return r.driveStep(ctx, s, drives, want, hash)
}

// desiredDrive is the drive's files and hash, nil without cloudInit.
func (r *XenVMReconciler) desiredDrive(ctx context.Context, s *vmScope) (*configdrive.Files, string, error) {
	if s.obj.Spec.CloudInit == nil {
		return nil, "", nil
	}
	files, err := r.cloudInitFiles(ctx, s)
	if err != nil {
		return nil, "", err
	}
	hash, err := files.Hash()
	if err != nil {
		return nil, "", &bootstrapProblem{virtv1alpha1.ReasonDataTooLarge, err.Error()}
	}
	return &files, hash, nil
}

// driveStep takes the next steps towards the wanted drive: old drives go
// while the VM is halted (a running VM keeps its drive until its next
// halt), then the drive is created, written and attached.
func (r *XenVMReconciler) driveStep(ctx context.Context, s *vmScope, drives []*xenapi.VDI, want *configdrive.Files, hash string) (ctrl.Result, error) {
	var current *xenapi.VDI
	var stale []*xenapi.VDI
	for _, d := range drives {
		if h := d.OtherConfig[vmservice.TagConfigHash]; want != nil && current == nil && (h == hash || h == "") {
			current = d
		} else {
			stale = append(stale, d)
		}
	}
	if len(stale) > 0 {
		if s.vm.PowerState == xenapi.PowerStateHalted {
			return r.removeDrive(ctx, s, stale[0])
		}
		s.pending = append(s.pending, "the changed cloudInit (a new config drive)")
		s.cond(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationPending,
			"The changed cloudInit is written to a new config drive, with a new instance-id, at the VM's next halt")
		return ctrl.Result{}, nil
	}
	if want == nil {
		s.obj.Status.CloudInit = nil
		return ctrl.Result{}, nil
	}
	files := *want
	files.MetaData = maps.Clone(want.MetaData)
	files.MetaData["instance-id"] = instanceID(s, hash, current)
	image, err := configdrive.Build(files)
	if errors.Is(err, configdrive.ErrTooLarge) {
		s.failed = true
		s.stop()
		s.cond(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionFalse, virtv1alpha1.ReasonDataTooLarge, "%s", err.Error())
		return ctrl.Result{}, nil // a spec or Secret change wakes the XenVM
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if current == nil {
		return r.createDrive(ctx, s, int64(len(image)))
	}
	return r.writeAndAttach(ctx, s, current, image, hash, files.MetaData["instance-id"])
}

// createDrive creates the empty drive on the SR of the VM's root disk
// (where the install put it, when the cache does not show the disk yet);
// its event wakes the XenVM to write it.
func (r *XenVMReconciler) createDrive(ctx context.Context, s *vmScope, size int64) (ctrl.Result, error) {
	var sr *xenapi.SR
	if root := r.disksOf(s).vdis[virtv1alpha1.RootDiskName]; root != nil {
		sr, _ = s.conn.Cache.SRs.Get(root.SR)
	}
	if sr == nil {
		storage := ""
		if d := specDisk(s.obj, virtv1alpha1.RootDiskName); d != nil {
			storage = d.Storage
		}
		var p *lookupProblem
		if sr, p = resolveSR(s.conn.Cache, storage, virtv1alpha1.RootDiskName); p != nil {
			s.failed = true
			s.stop()
			s.cond(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionFalse, p.reason, "No SR for the config drive: %s", p.msg)
			return ctrl.Result{RequeueAfter: requeuePoolProblem}, nil
		}
	}
	const mib = 1 << 20
	if err := s.conn.Service.CreateConfigDrive(ctx, s.vm, s.owner, sr, (size+mib-1)/mib*mib); err != nil {
		return r.fail(s, virtv1alpha1.ConditionBootstrapReady, reasonForDisk(err, virtv1alpha1.ReasonUploadFailed), "create the config drive", err)
	}
	s.stop()
	s.cond(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionFalse, virtv1alpha1.ReasonTransitioning, "Writing the config drive")
	return ctrl.Result{RequeueAfter: requeueCacheLag}, nil
}

// writeAndAttach writes a drive not written yet and attaches it; the VM
// may start in the same reconcile.
func (r *XenVMReconciler) writeAndAttach(ctx context.Context, s *vmScope, drive *xenapi.VDI, image []byte, hash, id string) (ctrl.Result, error) {
	if drive.OtherConfig[vmservice.TagConfigHash] == "" {
		ctrl.LoggerFrom(ctx).Info("Writing the config drive", "vdi", drive.UUID, "bytes", len(image))
		if err := s.conn.Service.WriteConfigDrive(ctx, drive, s.owner, image, hash, id); err != nil {
			return r.fail(s, virtv1alpha1.ConditionBootstrapReady, virtv1alpha1.ReasonUploadFailed, "write the config drive", err)
		}
	}
	if vbdOf(s, drive) == nil {
		if err := s.conn.Service.AttachDisk(ctx, s.vm, s.owner, drive, ""); err != nil {
			return r.fail(s, virtv1alpha1.ConditionBootstrapReady, virtv1alpha1.ReasonConfigurationFailed, "attach the config drive", err)
		}
	}
	s.obj.Status.CloudInit = &virtv1alpha1.CloudInitStatus{VDIUUID: drive.UUID, Hash: hash, InstanceID: id}
	s.cond(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionTrue, virtv1alpha1.ReasonInSync,
		"Config drive %s holds the spec's cloudInit (instance-id %s); cloud-init applies it at first boot", drive.UUID, id)
	return ctrl.Result{}, nil
}

// removeDrive detaches, then destroys, a config drive no longer wanted.
func (r *XenVMReconciler) removeDrive(ctx context.Context, s *vmScope, drive *xenapi.VDI) (ctrl.Result, error) {
	var err error
	if vbd := vbdOf(s, drive); vbd != nil {
		err = s.conn.Service.DetachDisk(ctx, vbd, s.owner)
	} else {
		err = s.conn.Service.DropDisk(ctx, drive, s.owner)
	}
	if err != nil {
		return r.fail(s, virtv1alpha1.ConditionBootstrapReady, virtv1alpha1.ReasonConfigurationFailed, "remove the old config drive", err)
	}
	s.stop()
	return ctrl.Result{RequeueAfter: requeueCacheLag}, nil
}

// vbdOf is the VM's VBD of a disk, nil when the VM does not have it attached.
func vbdOf(s *vmScope, vdi *xenapi.VDI) *xenapi.VBD {
	for _, vbd := range s.conn.Cache.VBDsOf(s.vm) {
		if vbd.VDI == vdi.Ref {
			return vbd
		}
	}
	return nil
}
