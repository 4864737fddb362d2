package controller

import (
	"context"
	"errors"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// reconcileInstall finds the XenVM's VM or installs it, one step per call
// (clone, claim, provision), each step resumable after a crash; it owns
// Provisioned. Duplicates a crash left behind are destroyed.
func (r *XenVMReconciler) reconcileInstall(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if s.obj.Spec.VM != nil {
		return r.adopt(ctx, s)
	}
	vm, extras := r.ownedVM(s)
	for _, extra := range extras {
		if res, err := r.removeDuplicate(ctx, s, extra); s.done() || err != nil {
			return res, err
		}
	}
	switch {
	case vm == nil && s.obj.Status.UUID != "":
		return r.vmMissing(ctx, s)
	case vm == nil:
		return r.clone(ctx, s)
	case vmservice.Pending(vm):
		// Cloned by this process; its event (which wakes the XenVM) is on its way.
		return s.awaitOwnWrites()
	}
	s.vm = vm
	if len(vm.CurrentOperations) > 0 && !vmservice.Installed(vm, s.owner) {
		// A clone or provision still runs (begun before a restart): its end
		// wakes the XenVM.
		s.stop()
		return ctrl.Result{RequeueAfter: requeueBusy}, nil
	}
	if res, err := r.claim(ctx, s); s.done() || err != nil {
		return res, err
	}
	if res, err := r.provision(ctx, s); s.done() || err != nil {
		return res, err
	}
	s.obj.Status.UUID = s.vm.UUID
	s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionTrue, virtv1alpha1.ReasonProvisioned, "VM %s is installed", s.vm.UUID)
	return ctrl.Result{}, nil
}

// ownedVM returns the XenVM's VM as this process knows it, and the
// duplicates to remove.
func (r *XenVMReconciler) ownedVM(s *vmScope) (*xenapi.VM, []*xenapi.VM) {
	vms := vmservice.Owned(s.conn.Cache, s.owner)
	if vm, ok := vmservice.ByUUID(s.conn.Cache, s.obj.Status.UUID); ok &&
		!slices.ContainsFunc(vms, func(v *xenapi.VM) bool { return v.Ref == vm.Ref }) {
		vms = append(vms, vm)
	}
	return vmservice.Canonical(vms, s.owner, s.obj.Status.UUID)
}

// removeDuplicate destroys a second VM of the XenVM: a clone a crashed
// process started while its successor cloned again.
func (r *XenVMReconciler) removeDuplicate(ctx context.Context, s *vmScope, vm *xenapi.VM) (ctrl.Result, error) {
	ctrl.LoggerFrom(ctx).Info("Destroying a duplicate VM", "uuid", vm.UUID, "name", vm.NameLabel)
	if len(vm.CurrentOperations) > 0 {
		s.stop() // still being cloned or provisioned: its end wakes the XenVM
		return ctrl.Result{RequeueAfter: requeueBusy}, nil
	}
	if vm.PowerState != xenapi.PowerStateHalted {
		if err := s.conn.Service.PowerOff(ctx, vm); err != nil {
			return r.fail(s, virtv1alpha1.ConditionProvisioned, virtv1alpha1.ReasonProvisionFailed, "destroy duplicate", err)
		}
	}
	if err := s.conn.Service.Destroy(ctx, vm); err != nil {
		return r.fail(s, virtv1alpha1.ConditionProvisioned, virtv1alpha1.ReasonProvisionFailed, "destroy duplicate", err)
	}
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "DuplicateDestroyed", "Install",
		"Destroyed VM %s, a second install left by an interrupted one", vm.UUID)
	return ctrl.Result{}, nil
}

// vmMissing handles a XenVM whose installed VM the pool no longer shows:
// confirmed with xapi, it was destroyed behind the operator's back.
func (r *XenVMReconciler) vmMissing(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	obj, uuid := s.obj, s.obj.Status.UUID
	s.stop()
	deleted := meta.FindStatusCondition(obj.Status.Conditions, virtv1alpha1.ConditionProvisioned)
	alreadyReported := deleted != nil && deleted.Reason == virtv1alpha1.ReasonVMDeleted && strings.Contains(deleted.Message, uuid)
	if !alreadyReported || obj.Spec.RecreateIfMissing {
		// The cache may lag: a connection or authentication failure is
		// never "gone".
		exists, err := s.conn.Service.Exists(ctx, uuid)
		if err != nil {
			return r.fail(s, virtv1alpha1.ConditionProvisioned, virtv1alpha1.ReasonProvisionFailed, "look up", err)
		}
		if exists {
			return ctrl.Result{RequeueAfter: requeueCacheLag}, nil
		}
	}
	const msg = "VM %s was destroyed outside the operator; set spec.recreateIfMissing to install it again"
	if !obj.Spec.RecreateIfMissing {
		if !alreadyReported {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonVMDeleted, "Observe", msg, uuid)
		}
		s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonVMDeleted, msg, uuid)
		obj.Status.PowerState, obj.Status.ResidentOn, obj.Status.IPAddresses, obj.Status.Operation = "", "", nil, nil
		return ctrl.Result{}, nil
	}
	ctrl.LoggerFrom(ctx).Info("Reinstalling VM destroyed outside the operator", "uuid", uuid)
	r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonVMDeleted, "Reinstall",
		"VM %s was destroyed outside the operator; installing it again", uuid)
	obj.Status.UUID, obj.Status.Operation = "", nil
	return r.clone(ctx, s)
}

// clone starts the install: the template, cloned under the install name.
func (r *XenVMReconciler) clone(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	s.stop() // the clone's event wakes the XenVM for the next step
	// One message while the install waits for room and while it clones: a
	// status write less per VM.
	s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonProvisioning,
		"Installing from template %q", s.obj.Spec.Template)
	if _, p := planStorage(s.conn.Cache, s.obj, nil, s.obj.Spec.AffinityHost); p != nil {
		// Nothing is cloned for disks the pool cannot hold.
		return r.installProblem(s, p)
	}
	if !s.conn.Service.CanInstall(s.owner) {
		// Enough installs are under way on the pool: wait in line rather
		// than hold a worker other reconciles need; room wakes the XenVM.
		return ctrl.Result{RequeueAfter: requeueWaitingForRoom, Priority: new(priorityWaiting)}, nil
	}
	tmpl, ok := r.resolveTemplate(s)
	if !ok {
		s.failed = true
		return ctrl.Result{RequeueAfter: requeuePoolProblem}, nil
	}
	ctrl.LoggerFrom(ctx).Info("Cloning template", "template", tmpl.NameLabel)
	if _, err := s.conn.Service.Clone(ctx, tmpl, s.owner); err != nil {
		return r.fail(s, virtv1alpha1.ConditionProvisioned, virtv1alpha1.ReasonProvisionFailed, "clone", err)
	}
	// The clone's event wakes the XenVM for the claim and provision; the
	// status goes out then (or now, for XenVMs waiting in line).
	return s.awaitOwnWrites()
}

// resolveTemplate finds exactly one template by name or UUID.
func (r *XenVMReconciler) resolveTemplate(s *vmScope) (*xenapi.VM, bool) {
	tmpls := vmservice.Templates(s.conn.Cache, s.obj.Spec.Template)
	switch len(tmpls) {
	case 1:
		return tmpls[0], true
	case 0:
		s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonTemplateNotFound,
			"No template is named %q or has that UUID", s.obj.Spec.Template)
	default:
		uuids := make([]string, len(tmpls))
		for i, t := range tmpls {
			uuids[i] = t.UUID
		}
		slices.Sort(uuids)
		s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonTemplateAmbiguous,
			"%d templates are named %q (%s): name one by UUID", len(tmpls), s.obj.Spec.Template, strings.Join(uuids, ", "))
	}
	return nil, false
}

// claim tags the clone with the XenVM before anything else, so that it is
// found again after a crash, and points its disks at their SRs, the root
// disk at its size.
func (r *XenVMReconciler) claim(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if vmservice.Installed(s.vm, s.owner) {
		return ctrl.Result{}, nil
	}
	storage, p := planStorage(s.conn.Cache, s.obj, nil, s.obj.Spec.AffinityHost)
	if p != nil {
		return r.installProblem(s, p)
	}
	s.plan = storage.diskPlan(s.conn.Cache, s.obj)
	if !vmservice.NeedsClaim(s.vm, s.owner, s.plan) {
		return ctrl.Result{}, nil
	}
	if err := s.conn.Service.Claim(ctx, s.vm, s.owner, s.obj.Spec.OtherConfig, s.plan); err != nil {
		return r.fail(s, virtv1alpha1.ConditionProvisioned, virtv1alpha1.ReasonProvisionFailed, "tag", err)
	}
	return r.reread(s)
}

// installProblem reports storage the install cannot use, in DisksSynced
// and Provisioned, and stops; the pool's changes wake the XenVM.
func (r *XenVMReconciler) installProblem(s *vmScope, p *lookupProblem) (ctrl.Result, error) {
	r.storageProblem(s, p)
	s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, p.reason, "%s", p.msg)
	return ctrl.Result{RequeueAfter: requeuePoolProblem}, nil
}

// provision turns the claimed clone into a VM with its disks.
func (r *XenVMReconciler) provision(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if vmservice.Installed(s.vm, s.owner) {
		return ctrl.Result{}, nil
	}
	if !vmservice.Claimed(s.vm, s.owner, s.plan) {
		// A configuration problem of the pool: say so; the pool's change
		// wakes the XenVM.
		s.failed = true
		s.stop()
		s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonProvisionFailed,
			"provision: the pool has no default SR for the VM's disks")
		return ctrl.Result{RequeueAfter: requeuePoolProblem}, nil
	}
	ctrl.LoggerFrom(ctx).Info("Provisioning VM", "uuid", s.vm.UUID)
	err := s.conn.Service.Provision(ctx, s.vm, s.owner)
	switch {
	case errors.Is(err, vmservice.ErrInstalled):
		return r.reread(s) // provisioned by an earlier reconcile this view lagged
	case errors.Is(err, vmservice.ErrBusy):
		s.stop() // its end wakes the XenVM
		return ctrl.Result{RequeueAfter: requeueBusy}, nil
	}
	if err != nil {
		return r.fail(s, virtv1alpha1.ConditionProvisioned, reasonForDisk(err, virtv1alpha1.ReasonProvisionFailed), "provision", err)
	}
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, virtv1alpha1.ReasonProvisioned, "Provision",
		"Installed VM %s from template %q", s.vm.UUID, s.obj.Spec.Template)
	return r.reread(s)
}

// reread refreshes s.vm after a write: the cache shows what this process
// wrote even before its event.
func (r *XenVMReconciler) reread(s *vmScope) (ctrl.Result, error) {
	vm, ok := s.conn.Cache.VM(s.vm.Ref)
	if !ok {
		s.stop() // destroyed in between: the next reconcile says so
		return ctrl.Result{RequeueAfter: requeueCacheLag}, nil
	}
	s.vm = vm
	return ctrl.Result{}, nil
}
