package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// reconcileDelete shuts the VM down and destroys it with its disks
// (Delete), or untags it (Retain); the finalizer comes off only then. While
// the pool cannot be reached the finalizer stays and HostAvailable says why:
// deleting then could leak the VM.
func (r *XenVMReconciler) reconcileDelete(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(s.obj, vmFinalizer) {
		return ctrl.Result{}, nil
	}
	if s.host != nil && s.obj.Spec.VM != nil {
		if conn, ok := r.Conns.Get(keyOf(s.host)); ok {
			conn.Observers.Forget(s.owner)
		}
	}
	if s.host == nil && s.obj.Status.UUID == "" || s.obj.Spec.Observed() {
		return r.removeFinalizer(ctx, s) // nothing was installed, or the VM is only observed
	}
	return runPhases(ctx, s, r.reconcileConnection, r.deleteBackoff, r.deleteVMs, r.removeFinalizer)
}

// deletionKey keys the failures of a XenVM's deletion apart from its
// earlier ones: deleting starts with a clean slate.
func deletionKey(s *vmScope) types.UID { return s.obj.UID + "/delete" }

// deleteBackoff holds the deletion back while it waits after a failure.
func (r *XenVMReconciler) deleteBackoff(_ context.Context, s *vmScope) (ctrl.Result, error) {
	if d, msg := r.failures.wait(deletionKey(s), s.obj.Generation); d > 0 {
		s.failed = true
		s.stop()
		s.note = msg + "; " + retryNote(d, time.Now())
		return ctrl.Result{RequeueAfter: d}, nil
	}
	return ctrl.Result{}, nil
}

// deleteVMs releases or destroys every VM of the XenVM (duplicates a crash
// left are destroyed either way).
func (r *XenVMReconciler) deleteVMs(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	vm, extras := r.ownedVM(s)
	if vm != nil && vmservice.Pending(vm) {
		s.stop() // a clone this process made: wait for it, then delete it
		return ctrl.Result{RequeueAfter: requeueCacheLag}, nil
	}
	if op := s.obj.Status.Operation; op != nil {
		r.clearOperation(s) // a hard shutdown interrupts it
	}
	for _, dup := range extras {
		if res, err := r.destroy(ctx, s, dup); s.done() || err != nil {
			return res, err
		}
	}
	switch {
	case vm == nil:
		return ctrl.Result{}, nil
	case s.obj.Spec.EffectiveDeletionPolicy() == virtv1alpha1.DeletionPolicyRetain:
		if err := s.conn.Service.Release(ctx, vm); err != nil {
			return r.deleteFailed(s, "release", err)
		}
		ctrl.LoggerFrom(ctx).Info("Released VM", "uuid", vm.UUID)
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "Retained", "Release", "VM %s left as it is and no longer managed", vm.UUID)
		return ctrl.Result{}, nil
	}
	if res, err := r.destroy(ctx, s, vm); s.done() || err != nil {
		return res, err
	}
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "Destroyed", "Destroy", "VM %s and its disks destroyed", vm.UUID)
	return ctrl.Result{}, nil
}

// destroy powers a VM off (which interrupts whatever it was doing) and
// destroys it with its disks.
func (r *XenVMReconciler) destroy(ctx context.Context, s *vmScope, vm *xenapi.VM) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx).WithValues("uuid", vm.UUID)
	if vm.PowerState != xenapi.PowerStateHalted {
		log.Info("Powering off VM for deletion")
		if err := s.conn.Service.PowerOff(ctx, vm); err != nil && !xenapi.IsHandleInvalid(err) {
			return r.deleteFailed(s, "power off", err)
		}
	}
	if err := s.conn.Service.Destroy(ctx, vm); err != nil {
		return r.deleteFailed(s, "destroy", err)
	}
	log.Info("Destroyed VM")
	return ctrl.Result{}, nil
}

// deleteFailed waits for an operation in progress to end, and backs off
// after other failures; Ready says why the XenVM is still there.
func (r *XenVMReconciler) deleteFailed(s *vmScope, step string, err error) (ctrl.Result, error) {
	s.failed = true
	s.stop()
	if xenapi.IsOtherOperationInProgress(err) || xenapi.IsBadPowerState(err) {
		return ctrl.Result{RequeueAfter: requeueBusy}, nil // the operation's end wakes the XenVM
	}
	if xenapi.IsConnectionError(err) || xenapi.IsAuthenticationFailed(err) || errors.Is(err, xenapi.ErrClosed) {
		return r.fail(s, "", "", step, err)
	}
	d := r.failures.failed(deletionKey(s), s.obj.Generation, fmt.Errorf("%s: %w", step, err))
	s.note = fmt.Sprintf("%s: %s; %s", step, err.Error(), retryNote(d, time.Now()))
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, "DeleteFailed", step, "%s", err.Error())
	return ctrl.Result{RequeueAfter: d}, nil
}

// removeFinalizer lets the API server delete the XenVM.
func (r *XenVMReconciler) removeFinalizer(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	for _, k := range []types.UID{s.obj.UID, deletionKey(s), hostKey(s)} {
		r.failures.succeeded(k)
	}
	patch := client.MergeFrom(s.obj.DeepCopy())
	if controllerutil.RemoveFinalizer(s.obj, vmFinalizer) {
		return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, s.obj, patch))
	}
	return ctrl.Result{}, nil
}
