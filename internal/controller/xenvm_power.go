package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// abandonAfter is how long past spec.operationTimeout a task that ignores
// its cancellation is still followed before the operator looks at the VM
// without it.
const abandonAfter = time.Minute

func softTimeout(obj *virtv1alpha1.XenVM) time.Duration {
	if obj.Spec.SoftShutdownTimeout == nil || obj.Spec.SoftShutdownTimeout.Duration <= 0 {
		return 2 * time.Minute
	}
	return obj.Spec.SoftShutdownTimeout.Duration
}

func operationTimeout(obj *virtv1alpha1.XenVM) time.Duration {
	if obj.Spec.OperationTimeout == nil || obj.Spec.OperationTimeout.Duration <= 0 {
		return 10 * time.Minute
	}
	return obj.Spec.OperationTimeout.Duration
}

// operation is the power operation in flight: status.operation, or what
// this process began and the cached status does not show yet.
func (r *XenVMReconciler) operation(s *vmScope) *virtv1alpha1.Operation {
	op := s.obj.Status.Operation
	if ref, name, since, ok := s.conn.Cache.TrackedFor(s.owner.Key()); ok && (op == nil || op.TaskRef != ref) &&
		(op == nil || since.After(op.StartTime.Time)) {
		op = &virtv1alpha1.Operation{Name: name, TaskRef: ref, StartTime: metav1.NewTime(since)}
		s.obj.Status.Operation = op
	}
	return op
}

// begin records an operation this process started as a task.
func (r *XenVMReconciler) begin(s *vmScope, name, ref string) {
	s.conn.Cache.TrackTask(ref, s.owner.Key(), name)
	s.obj.Status.Operation = &virtv1alpha1.Operation{Name: name, StartTime: metav1.Now(), TaskRef: ref}
}

// clearOperation forgets the operation in flight.
func (r *XenVMReconciler) clearOperation(s *vmScope) {
	if op := s.obj.Status.Operation; op != nil && op.TaskRef != "" {
		s.conn.Cache.ForgetTask(op.TaskRef)
	}
	s.obj.Status.Operation = nil
}

// reconcileOperation follows the operation in flight until its task ends:
// it stops the phases after it while the task runs, and gives up on a task
// xapi lost or that outlives spec.operationTimeout.
func (r *XenVMReconciler) reconcileOperation(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	op := r.operation(s)
	if op == nil || op.TaskRef == "" || s.vm == nil {
		s.obj.Status.Operation = nil
		return ctrl.Result{}, nil
	}
	s.conn.Cache.TrackTask(op.TaskRef, s.owner.Key(), op.Name) // after a restart, too
	task, state, silent := s.conn.Cache.Task(op.TaskRef)
	if state == cache.TaskUnknown && silent >= taskSilence {
		// No event for the task: ask xapi (the stream may have missed it).
		t, err := s.conn.Service.Task(ctx, op.TaskRef)
		switch {
		case xenapi.IsHandleInvalid(err):
			state = cache.TaskGone
		case err != nil:
			return r.fail(s, virtv1alpha1.ConditionPowerStateSynced, virtv1alpha1.ReasonPowerOperationFailed, op.Name, err)
		default:
			task, state = t, cache.TaskKnown
		}
	}
	switch {
	case state == cache.TaskDone:
		r.clearOperation(s) // a stale record of an operation this process finished
		return ctrl.Result{}, nil
	case state == cache.TaskGone:
		return r.operationLost(ctx, s, op)
	case state == cache.TaskUnknown, task.Status == xenapi.TaskPending:
		return r.operationPending(ctx, s, op, task, silent)
	}
	err := s.conn.Service.FinishTask(ctx, task)
	r.clearOperation(s)
	switch op.Name {
	case opRevert:
		return r.reverted(s, err)
	case opMigrate:
		return r.migrated(s, err)
	}
	if err != nil {
		return r.stepFailed(ctx, s, vmservice.PowerOp(op.Name), err)
	}
	s.vm.PowerState = resultOf(vmservice.PowerOp(op.Name), s.vm.PowerState)
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "PowerStateChanged", op.Name, "VM is %s", s.vm.PowerState)
	return ctrl.Result{}, nil
}

// operationLost handles a task xapi no longer knows: it restarted, or
// collected the task. The VM's power state says what happened.
func (r *XenVMReconciler) operationLost(ctx context.Context, s *vmScope, op *virtv1alpha1.Operation) (ctrl.Result, error) {
	ctrl.LoggerFrom(ctx).Info("Operation lost by xapi", "operation", op.Name, "uuid", s.vm.UUID)
	r.clearOperation(s)
	s.note = "xapi lost the task of " + op.Name + " (it restarted or collected it)"
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonOperationLost, op.Name,
		"xapi no longer knows the task of %s (it restarted or collected it); the VM is %s", op.Name, s.vm.PowerState)
	s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonOperationLost,
		"%s; the VM is %s", s.note, s.vm.PowerState)
	return ctrl.Result{}, nil
}

// operationPending waits for a running task, within its deadlines.
// silent is how long this process has followed the task without news of it.
func (r *XenVMReconciler) operationPending(ctx context.Context, s *vmScope, op *virtv1alpha1.Operation, task *xenapi.Task,
	silent time.Duration) (ctrl.Result, error) {
	s.stop()
	age, timeout := time.Since(op.StartTime.Time), operationTimeout(s.obj)
	if task != nil {
		op.Progress = int32(task.Progress * 100)
	}
	switch {
	case age >= timeout+abandonAfter:
		// The task ignored its cancellation: look at the VM without it.
		r.clearOperation(s)
		d := r.failures.failed(s.obj.UID, s.obj.Generation, errTimedOut(op, timeout))
		s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonOperationTimedOut,
			"%s did not end within %s and ignored its cancellation; the VM is %s; %s", op.Name, timeout, s.vm.PowerState, retryNote(d, time.Now()))
		s.failed = true
		return ctrl.Result{RequeueAfter: d}, nil
	case age >= timeout:
		if err := s.conn.Service.CancelTask(ctx, op.TaskRef); err != nil {
			return r.fail(s, virtv1alpha1.ConditionPowerStateSynced, virtv1alpha1.ReasonOperationTimedOut, op.Name, err)
		}
		s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonOperationTimedOut,
			"%s did not end within %s: cancelled", op.Name, timeout)
		return ctrl.Result{RequeueAfter: min(requeueOperation, timeout+abandonAfter-age)}, nil
	case vmservice.PowerOp(op.Name) == vmservice.OpCleanShutdown && powerOffMode(s.obj) == virtv1alpha1.PowerOffTrySoft &&
		age >= softTimeout(s.obj):
		// The guest took too long: power it off (this interrupts the clean shutdown).
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "SoftShutdownTimedOut", "HardShutdown",
			"The guest did not shut down within %s; powering the VM off", softTimeout(s.obj))
		if err := s.conn.Service.PowerOff(ctx, s.vm); err != nil {
			return r.fail(s, virtv1alpha1.ConditionPowerStateSynced, virtv1alpha1.ReasonPowerOperationFailed, string(vmservice.OpHardShutdown), err)
		}
		return ctrl.Result{RequeueAfter: requeueBusy}, nil
	}
	wait := min(requeueOperation, timeout-age)
	if vmservice.PowerOp(op.Name) == vmservice.OpCleanShutdown && powerOffMode(s.obj) == virtv1alpha1.PowerOffTrySoft {
		wait = min(wait, softTimeout(s.obj)-age)
	}
	if task == nil {
		// Asked of xapi once it has been silent for taskSilence since this
		// process began following it (not since the operation began: after
		// a restart that would be a busy loop).
		wait = min(wait, taskSilence-silent+time.Second)
	}
	return ctrl.Result{RequeueAfter: max(wait, 10*time.Millisecond)}, nil
}

type timedOut struct {
	op      string
	timeout time.Duration
}

func (e timedOut) Error() string { return e.op + " did not end within " + e.timeout.String() }

func errTimedOut(op *virtv1alpha1.Operation, timeout time.Duration) error {
	return timedOut{op: op.Name, timeout: timeout}
}

// stepFailed handles a failed power operation: some failures say where the
// VM is or what to do instead; the others back off.
func (r *XenVMReconciler) stepFailed(ctx context.Context, s *vmScope, op vmservice.PowerOp, err error) (ctrl.Result, error) {
	xe, _ := xenapi.AsError(err)
	switch {
	case xenapi.IsBadPowerState(err):
		// Someone else moved the VM: take xapi's word for where it is now.
		if actual := xe.Param(2); actual != "" {
			s.vm.PowerState = xenapi.PowerState(strings.ToUpper(actual[:1]) + actual[1:])
		}
		return ctrl.Result{}, nil
	case xenapi.IsLacksFeature(err) && op == vmservice.OpCleanShutdown && powerOffMode(s.obj) == virtv1alpha1.PowerOffTrySoft:
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "NoGuestAgent", "HardShutdown",
			"The guest cannot shut down cleanly (no guest agent); powering the VM off")
		if err := s.conn.Service.PowerOff(ctx, s.vm); err != nil {
			return r.fail(s, virtv1alpha1.ConditionPowerStateSynced, virtv1alpha1.ReasonPowerOperationFailed, string(vmservice.OpHardShutdown), err)
		}
		s.vm.PowerState = xenapi.PowerStateHalted
		return ctrl.Result{}, nil
	case xenapi.IsLacksFeature(err):
		// The guest agent's report wakes the XenVM; meanwhile, back off.
		s.failed = true
		s.stop()
		d := r.failures.failed(s.obj.UID, s.obj.Generation, err)
		s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonWaitingForGuest,
			"%s needs the guest agent, which has not reported yet; %s", op, retryNote(d, time.Now()))
		return ctrl.Result{RequeueAfter: d}, nil
	case xe != nil && xe.Code == xenapi.CodeTaskCancelled:
		// Cancelled, by this operator after a timeout or by someone else:
		// back off, then the VM's power state says where to go.
		s.failed = true
		s.stop()
		d := r.failures.failed(s.obj.UID, s.obj.Generation, err)
		s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonOperationTimedOut,
			"%s was cancelled; %s", op, retryNote(d, time.Now()))
		return ctrl.Result{RequeueAfter: d}, nil
	case xenapi.IsHandleInvalid(err):
		s.stop() // the VM is gone: the install phase says so
		return ctrl.Result{RequeueAfter: requeueBusy}, nil
	}
	return r.fail(s, virtv1alpha1.ConditionPowerStateSynced, virtv1alpha1.ReasonPowerOperationFailed, string(op), err)
}

// reconcilePower starts the next operation towards spec.powerState; it owns
// PowerStateSynced.
func (r *XenVMReconciler) reconcilePower(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if s.vm == nil {
		return ctrl.Result{}, nil
	}
	want := desiredPower(s.obj)
	op, ok := nextStep(s.vm.PowerState, want, powerOffMode(s.obj))
	if !ok {
		r.failures.succeeded(s.obj.UID)
		s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync, "VM is %s", want)
		return ctrl.Result{}, nil
	}
	if len(s.vm.CurrentOperations) > 0 {
		// Another client's operation runs on the VM; its end wakes the XenVM.
		s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonTransitioning,
			"Waiting for the operation in progress on the VM (%s)", strings.Join(sortedValues(s.vm.CurrentOperations), ", "))
		return ctrl.Result{RequeueAfter: requeueBusy}, nil
	}
	ctrl.LoggerFrom(ctx).Info("Starting power operation", "operation", op, "uuid", s.vm.UUID)
	ref, err := s.conn.Service.BeginPower(ctx, s.vm, op)
	if err != nil {
		res, err := r.stepFailed(ctx, s, op, err)
		if err == nil && res.IsZero() {
			res.RequeueAfter = requeueBusy // the VM was elsewhere: look again
		}
		return res, err
	}
	r.begin(s, string(op), ref)
	msg := fmt.Sprintf("Moving the VM from %s to %s: %s", s.vm.PowerState, want, op)
	if s.note != "" {
		msg += ", after " + s.note
	}
	s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonTransitioning, "%s", msg)
	return ctrl.Result{RequeueAfter: requeueOperation}, nil
}

// sortedValues returns a map's values, sorted.
func sortedValues(m map[string]string) []string {
	return slices.Sorted(maps.Values(m))
}
