package controller

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// adopt finds the VM spec.vm names and, in Manage mode, tags it with the
// XenVM; it owns Provisioned for an adopted VM. The tag is taken with
// xapi's add_to_other_config, which refuses a key that is there: two
// XenVMs adopting one VM cannot both win.
func (r *XenVMReconciler) adopt(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	uuid := s.obj.Spec.VM.UUID
	// The VM's changes wake the XenVM while it carries no tag (observed, or
	// not adoptable yet: a clone still a template, another XenVM's).
	s.conn.Observers.Observe(uuid, s.owner)
	vm, ok := vmservice.ByUUID(s.conn.Cache, uuid)
	if !ok {
		return r.adoptMissing(ctx, s, uuid)
	}
	if why := unadoptable(vm); why != "" {
		return r.refuseAdoption(s, "VM %s is %s: only VMs can be adopted", uuid, why)
	}
	owner := vm.OtherConfig[vmservice.TagUID]
	switch {
	case owner != "" && owner != s.owner.UID:
		return r.refuseAdoption(s, "VM %s is managed by XenVM %s already", uuid, vm.OtherConfig[vmservice.TagOwner])
	case s.obj.Spec.Observed():
		s.vm = vm
		s.obj.Status.UUID = vm.UUID
		s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionTrue, virtv1alpha1.ReasonObserved,
			"VM %s is observed: the operator reports it and changes nothing", uuid)
		return ctrl.Result{}, nil
	case owner == "":
		ctrl.LoggerFrom(ctx).Info("Adopting VM", "uuid", uuid, "name", vm.NameLabel)
		err := s.conn.Service.Adopt(ctx, vm, s.owner)
		if xe, ok := xenapi.AsError(err); ok && xe.Code == xenapi.CodeMapDuplicateKey {
			return r.refuseAdoption(s, "VM %s was adopted by another XenVM at the same time", uuid)
		}
		if err != nil {
			return r.fail(s, virtv1alpha1.ConditionProvisioned, virtv1alpha1.ReasonProvisionFailed, "adopt", err)
		}
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, virtv1alpha1.ReasonAdopted, "Adopt", "Adopted VM %s (%s)", uuid, vm.NameLabel)
		if res, err := r.reread(s); s.done() || err != nil {
			return res, err
		}
	default:
		s.vm = vm
	}
	s.obj.Status.UUID = vm.UUID
	s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionTrue, virtv1alpha1.ReasonAdopted, "VM %s is adopted", uuid)
	return ctrl.Result{}, nil
}

// unadoptable says why a VM cannot be adopted, "" when it can.
func unadoptable(vm *xenapi.VM) string {
	switch {
	case vm.IsControlDomain:
		return "a control domain"
	case vm.IsSnapshot:
		return "a snapshot"
	case vm.IsTemplate:
		return "a template"
	}
	return ""
}

// refuseAdoption reports a VM that cannot be adopted, and stops: nothing is
// retried until the spec or the VM changes.
func (r *XenVMReconciler) refuseAdoption(s *vmScope, format string, args ...any) (ctrl.Result, error) {
	s.failed = true
	s.stop()
	s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonAdoptionRefused, format, args...)
	return ctrl.Result{}, nil
}

// adoptMissing reports a spec.vm the pool does not have, asking xapi first
// (the cache may lag).
func (r *XenVMReconciler) adoptMissing(ctx context.Context, s *vmScope, uuid string) (ctrl.Result, error) {
	s.stop()
	c := meta.FindStatusCondition(s.obj.Status.Conditions, virtv1alpha1.ConditionProvisioned)
	if c == nil || c.Reason != virtv1alpha1.ReasonVMNotFound || !strings.Contains(c.Message, uuid) {
		exists, err := s.conn.Service.Exists(ctx, uuid)
		if err != nil {
			return r.fail(s, virtv1alpha1.ConditionProvisioned, virtv1alpha1.ReasonProvisionFailed, "look up", err)
		}
		if exists {
			return ctrl.Result{RequeueAfter: requeueCacheLag}, nil
		}
	}
	s.failed = true
	s.obj.Status.PowerState, s.obj.Status.ResidentOn, s.obj.Status.IPAddresses = "", "", nil
	s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonVMNotFound, "No VM of the pool has UUID %s", uuid)
	return ctrl.Result{RequeueAfter: requeuePoolProblem}, nil
}
