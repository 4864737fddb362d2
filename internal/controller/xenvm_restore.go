package controller

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// The operations besides power operations that status.operation follows.
const (
	opRevert  = "revert"
	opMigrate = "pool_migrate"
)

// reconcileRestore reverts the VM to the snapshot spec.restoreFrom names,
// once; it owns Restored. Until the revert has ended nothing else touches
// the VM: a revert begun again after a crash finds the VM as the first
// left it (halted or suspended, never started in between).
func (r *XenVMReconciler) reconcileRestore(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	req, st := s.obj.Spec.RestoreFrom, s.obj.Status.RestoredFrom
	switch {
	case s.vm == nil:
		return ctrl.Result{}, nil
	case req == nil:
		s.obj.Status.RestoredFrom = nil
		meta.RemoveStatusCondition(&s.obj.Status.Conditions, virtv1alpha1.ConditionRestored)
		return ctrl.Result{}, nil
	case st.Done() && st.SnapshotName == req.SnapshotName:
		s.cond(virtv1alpha1.ConditionRestored, metav1.ConditionTrue, virtv1alpha1.ReasonReverted,
			"Reverted to snapshot %s (%s) at %s", st.SnapshotName, st.SnapshotUUID, st.CompletionTime.UTC().Format(time.RFC3339))
		return ctrl.Result{}, nil
	}
	snap, res, err := r.restoreSnapshot(ctx, s, req.SnapshotName)
	if snap == nil || err != nil {
		return res, err
	}
	if len(s.vm.CurrentOperations) > 0 {
		s.stop() // another client's operation: its end wakes the XenVM
		s.cond(virtv1alpha1.ConditionRestored, metav1.ConditionFalse, virtv1alpha1.ReasonReverting,
			"Waiting for the operation in progress on the VM (%s)", strings.Join(sortedValues(s.vm.CurrentOperations), ", "))
		return ctrl.Result{RequeueAfter: requeueBusy}, nil
	}
	ctrl.LoggerFrom(ctx).Info("Reverting VM", "uuid", s.vm.UUID, "snapshot", snap.UUID)
	ref, err := s.conn.Service.BeginRevert(ctx, snap)
	if err != nil {
		return r.fail(s, virtv1alpha1.ConditionRestored, virtv1alpha1.ReasonRevertFailed, opRevert, err)
	}
	now := metav1.Now()
	s.obj.Status.RestoredFrom = &virtv1alpha1.RestoreStatus{SnapshotName: req.SnapshotName, SnapshotUUID: snap.UUID, StartTime: &now}
	r.begin(s, opRevert, ref)
	s.cond(virtv1alpha1.ConditionRestored, metav1.ConditionFalse, virtv1alpha1.ReasonReverting,
		"Reverting the VM to snapshot %s (%s)", req.SnapshotName, snap.UUID)
	s.stop()
	return ctrl.Result{RequeueAfter: requeueOperation}, nil
}

// restoreSnapshot finds the snapshot a restore names: a Ready
// XenVMSnapshot of this XenVM whose snapshot the pool still has. Otherwise
// Restored says why and the VM is otherwise kept as usual.
func (r *XenVMReconciler) restoreSnapshot(ctx context.Context, s *vmScope, name string) (*xenapi.VM, ctrl.Result, error) {
	obj := &virtv1alpha1.XenVMSnapshot{}
	err := r.Get(ctx, types.NamespacedName{Namespace: s.obj.Namespace, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err) || err == nil && obj.Spec.VMRef.Name != s.obj.Name:
		s.cond(virtv1alpha1.ConditionRestored, metav1.ConditionFalse, virtv1alpha1.ReasonSnapshotNotFound,
			"XenVMSnapshot %s of this XenVM not found", name)
		return nil, ctrl.Result{}, nil
	case err != nil:
		return nil, ctrl.Result{}, err
	case obj.Status.UUID == "":
		s.cond(virtv1alpha1.ConditionRestored, metav1.ConditionFalse, virtv1alpha1.ReasonSnapshotNotReady,
			"XenVMSnapshot %s is not taken yet", name)
		return nil, ctrl.Result{RequeueAfter: r.retry()}, nil
	}
	snap, ok := vmservice.ByUUID(s.conn.Cache, obj.Status.UUID)
	if !ok || !snap.IsSnapshot || snap.SnapshotOf != s.vm.Ref {
		s.cond(virtv1alpha1.ConditionRestored, metav1.ConditionFalse, virtv1alpha1.ReasonSnapshotNotFound,
			"The pool has no snapshot %s of this VM (XenVMSnapshot %s)", obj.Status.UUID, name)
		return nil, ctrl.Result{}, nil
	}
	return snap, ctrl.Result{}, nil
}

// reverted records the end of a revert: done, or failed and begun again
// after the backoff.
func (r *XenVMReconciler) reverted(s *vmScope, err error) (ctrl.Result, error) {
	st := s.obj.Status.RestoredFrom
	if err != nil {
		return r.fail(s, virtv1alpha1.ConditionRestored, virtv1alpha1.ReasonRevertFailed, opRevert, err)
	}
	if st == nil {
		// A stale copy of the XenVM: the cache's tracked task says this
		// process began the revert, the status it wrote then is not shown
		// yet. Record it now, or the restore phase would begin a second one.
		name := ""
		if req := s.obj.Spec.RestoreFrom; req != nil {
			name = req.SnapshotName
		}
		st = &virtv1alpha1.RestoreStatus{SnapshotName: name}
		s.obj.Status.RestoredFrom = st
	}
	now := metav1.Now()
	st.CompletionTime = &now
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, virtv1alpha1.ReasonReverted, "Revert",
		"VM reverted to snapshot %s (%s)", st.SnapshotName, st.SnapshotUUID)
	s.cond(virtv1alpha1.ConditionRestored, metav1.ConditionTrue, virtv1alpha1.ReasonReverted,
		"Reverted to snapshot %s (%s) at %s", st.SnapshotName, st.SnapshotUUID, now.UTC().Format(time.RFC3339))
	// xapi changed the VM's power state, disks and configuration: look at
	// it again once its events arrived, then drive it back to the spec.
	s.stop()
	return ctrl.Result{RequeueAfter: requeueBusy}, nil
}
