package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// placementKey keys a XenVM's refused migrations apart from its other
// failures: a VM that cannot move is still kept in its power state.
func placementKey(s *vmScope) types.UID { return s.obj.UID + "/placement" }

// reconcilePlacement live-migrates a running VM to spec.affinityHost
// (VM.assert_can_boot_here first, then VM.pool_migrate); it owns
// PlacementSynced. A refusal waits a growing backoff before the next try,
// and holds nothing else back.
func (r *XenVMReconciler) reconcilePlacement(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if s.vm == nil {
		return ctrl.Result{}, nil
	}
	name := s.obj.Spec.AffinityHost
	if name == "" {
		s.cond(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync, "No affinity host: the pool places the VM")
		return ctrl.Result{}, nil
	}
	host, ok := vmservice.HostByNameOrUUID(s.conn.Cache, name)
	if !ok {
		s.cond(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionFalse, virtv1alpha1.ReasonAffinityHostNotFound,
			"No host of the pool is named %q or has that UUID", name)
		return ctrl.Result{}, nil
	}
	switch {
	case s.vm.PowerState != xenapi.PowerStateRunning:
		s.cond(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync,
			"The VM is %s; it starts on %s", s.vm.PowerState, host.NameLabel)
		return ctrl.Result{}, nil
	case s.vm.ResidentOn == host.Ref:
		r.failures.succeeded(placementKey(s))
		s.cond(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync, "Runs on %s", host.NameLabel)
		return ctrl.Result{}, nil
	case desiredPower(s.obj) != virtv1alpha1.PowerStateRunning:
		return ctrl.Result{}, nil // it stops first; it starts on host
	}
	if d, msg := r.failures.wait(placementKey(s), s.obj.Generation); d > 0 {
		s.cond(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionFalse, virtv1alpha1.ReasonMigrationRefused,
			"%s; %s", msg, retryNote(d, time.Now()))
		return ctrl.Result{RequeueAfter: d}, nil
	}
	if len(s.vm.CurrentOperations) > 0 {
		return ctrl.Result{RequeueAfter: requeueBusy}, nil
	}
	if err := s.conn.Service.CanBootOn(ctx, s.vm, host); err != nil {
		return r.migrationRefused(s, host, err)
	}
	ctrl.LoggerFrom(ctx).Info("Migrating VM", "uuid", s.vm.UUID, "host", host.NameLabel)
	ref, err := s.conn.Service.BeginMigrate(ctx, s.vm, host)
	if err != nil {
		return r.migrationRefused(s, host, err)
	}
	r.begin(s, opMigrate, ref)
	s.cond(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionFalse, virtv1alpha1.ReasonMigrating,
		"Migrating the VM live to %s", host.NameLabel)
	s.stop()
	return ctrl.Result{RequeueAfter: requeueOperation}, nil
}

// migrationRefused reports xapi's refusal and backs off. Losing the pool is
// not a refusal.
func (r *XenVMReconciler) migrationRefused(s *vmScope, host *xenapi.Host, err error) (ctrl.Result, error) {
	if xenapi.IsConnectionError(err) || xenapi.IsAuthenticationFailed(err) || xenapi.IsBadPowerState(err) {
		return r.fail(s, virtv1alpha1.ConditionPlacementSynced, virtv1alpha1.ReasonMigrationRefused, opMigrate, err)
	}
	d := r.failures.failed(placementKey(s), s.obj.Generation, err)
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonMigrationRefused, "Migrate",
		"Cannot move the VM to %s: %s", host.NameLabel, err.Error())
	s.cond(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionFalse, virtv1alpha1.ReasonMigrationRefused,
		"Cannot move the VM to %s: %s; %s", host.NameLabel, err.Error(), retryNote(d, time.Now()))
	return ctrl.Result{RequeueAfter: d}, nil
}

// migrated records the end of a migration.
func (r *XenVMReconciler) migrated(s *vmScope, err error) (ctrl.Result, error) {
	host, _ := vmservice.HostByNameOrUUID(s.conn.Cache, s.obj.Spec.AffinityHost)
	if host == nil {
		host = &xenapi.Host{NameLabel: s.obj.Spec.AffinityHost}
	}
	if err != nil {
		return r.migrationRefused(s, host, err)
	}
	r.failures.succeeded(placementKey(s))
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "Migrated", "Migrate", "VM moved live to %s", host.NameLabel)
	s.vm.ResidentOn = host.Ref
	s.cond(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync, "Runs on %s", host.NameLabel)
	return ctrl.Result{}, nil
}
