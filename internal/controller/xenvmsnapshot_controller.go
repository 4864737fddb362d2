package controller

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

const (
	// snapshotFinalizer destroys (or releases) a XenVMSnapshot's snapshot.
	snapshotFinalizer = "virt.xen-operator.io/xenvmsnapshot"
	indexVMRef        = "spec.vmRef.name"
)

// XenVMSnapshotReconciler takes a XenVM's snapshot once, reports it, and
// destroys or releases it with the object.
type XenVMSnapshotReconciler struct {
	client.Client
	// APIReader tells a XenVM of another shard (which the manager's
	// label-selected cache does not hold) from one that does not exist.
	APIReader client.Reader
	Conns     *Connections
	Recorder  events.EventRecorder
	// RetryInterval is how long to wait while the XenVM, its XenHost or its
	// VM is missing (default 30s); their changes wake the snapshot sooner.
	RetryInterval time.Duration
	// Backoff is the wait after a failed XenAPI call (default 10s doubling
	// to 5m).
	Backoff wait.Backoff

	failures *failures
	written  *statusWrites[virtv1alpha1.XenVMSnapshotStatus]
}

// snapScope is what one reconcile of a XenVMSnapshot works with.
type snapScope struct {
	obj   *virtv1alpha1.XenVMSnapshot
	xvm   *virtv1alpha1.XenVM // nil when it does not exist
	owner vmservice.Owner
	conn  *Conn
	// failed marks a reconcile that could not do its work.
	failed, stopped bool
}

func (s *snapScope) done() bool { return s.stopped }

func (s *snapScope) ready(status metav1.ConditionStatus, reason, format string, args ...any) {
	setCondition(&s.obj.Status.Conditions, s.obj.Generation, virtv1alpha1.ConditionReady, status, reason, format, args...)
}

// Reconcile implements the XenVMSnapshot control loop.
func (r *XenVMSnapshotReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	written := r.written.pending(req.NamespacedName) // before the read: statusWrites tells why
	obj := &virtv1alpha1.XenVMSnapshot{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := &snapScope{obj: obj, owner: vmservice.Owner{UID: string(obj.UID), Namespace: obj.Namespace, Name: obj.Name}}
	xvm := &virtv1alpha1.XenVM{}
	vmKey := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Spec.VMRef.Name}
	switch err := r.Get(ctx, vmKey, xvm); {
	case apierrors.IsNotFound(err):
		// Not in this shard's cache: another shard's XenVM is left to it.
		if err := r.APIReader.Get(ctx, vmKey, &virtv1alpha1.XenVM{}); !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
	case err != nil:
		return ctrl.Result{}, err
	default:
		s.xvm = xvm
	}
	if s.xvm != nil {
		host := &virtv1alpha1.XenHost{}
		err := r.Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: s.xvm.Spec.HostRef.Name}, host)
		if err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		if conn, ok := r.Conns.Get(keyOf(host)); ok && err == nil && conn.Healthy() == nil {
			s.conn = conn
		}
	}
	if obj.DeletionTimestamp.IsZero() {
		if err := r.attach(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	if st, ok := written.newer(obj); ok {
		obj.Status = *st.DeepCopy() // the informer has not caught up with the last write
	}
	before := obj.DeepCopy()
	defer func() {
		if reterr == nil && !s.failed {
			obj.Status.ObservedGeneration = obj.Generation
		}
		if err := patchStatus(ctx, r.Client, before, obj, snapshotStatus); err != nil {
			reterr = errors.Join(reterr, err)
		} else if obj.ResourceVersion != before.ResourceVersion {
			r.written.record(obj, *obj.Status.DeepCopy())
		}
	}()
	if !obj.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}
	return runPhases(ctx, s, r.reconcilePrerequisites, r.reconcileTake, r.reconcileObserve)
}

// attach puts the finalizer on, and makes the XenVM the snapshot's owner
// so that it is garbage-collected with it, in one write, before anything
// is created in XenServer.
func (r *XenVMSnapshotReconciler) attach(ctx context.Context, s *snapScope) error {
	obj := s.obj
	patch := client.MergeFrom(obj.DeepCopy())
	changed := controllerutil.AddFinalizer(obj, snapshotFinalizer)
	if s.xvm != nil {
		owned, err := controllerutil.HasOwnerReference(obj.OwnerReferences, s.xvm, r.Scheme())
		if err != nil {
			return err
		}
		if !owned {
			if err := controllerutil.SetOwnerReference(s.xvm, obj, r.Scheme()); err != nil {
				return err
			}
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return r.Patch(ctx, obj, patch)
}

func (r *XenVMSnapshotReconciler) retry() time.Duration {
	if r.RetryInterval > 0 {
		return r.RetryInterval
	}
	return 30 * time.Second
}

// wait reports why the snapshot cannot be taken yet, and stops.
func (r *XenVMSnapshotReconciler) wait(s *snapScope, d time.Duration, reason, format string, args ...any) (ctrl.Result, error) {
	s.failed = true
	s.stopped = true
	s.ready(metav1.ConditionFalse, reason, format, args...)
	return ctrl.Result{RequeueAfter: d}, nil
}

// reconcilePrerequisites checks the XenVM and its pool.
func (r *XenVMSnapshotReconciler) reconcilePrerequisites(_ context.Context, s *snapScope) (ctrl.Result, error) {
	switch {
	case s.xvm == nil:
		return r.wait(s, r.retry(), virtv1alpha1.ReasonXenVMNotFound, "XenVM %s not found", s.obj.Spec.VMRef.Name)
	case !s.xvm.DeletionTimestamp.IsZero() && s.obj.Status.UUID == "":
		return r.wait(s, 0, virtv1alpha1.ReasonXenVMNotFound, "XenVM %s is being deleted: no snapshot is taken", s.xvm.Name)
	case s.xvm.Spec.Observed() && s.obj.Status.UUID == "":
		return r.wait(s, 0, virtv1alpha1.ReasonObserveOnly,
			"XenVM %s only observes its VM (managementPolicy Observe): no snapshot is taken", s.xvm.Name)
	case s.conn == nil:
		return r.wait(s, r.retry(), virtv1alpha1.ReasonXenHostNotReady, "XenHost %s is not connected", s.xvm.Spec.HostRef.Name)
	}
	return ctrl.Result{}, nil
}

// snapshotName is the snapshot's name_label in XenServer.
func snapshotName(s *snapScope) string { return s.obj.Name }

// reconcileTake takes the snapshot, once: the snapshot is found by its tag,
// or by the name it is taken under when a crash came before the tag.
func (r *XenVMSnapshotReconciler) reconcileTake(ctx context.Context, s *snapScope) (ctrl.Result, error) {
	snap, ok := vmservice.SnapshotOf(s.conn.Cache, s.owner)
	switch {
	case ok && vmservice.Pending(snap):
		// Taken by this process; the cache shows it soon, and wakes it.
		return r.wait(s, requeueCacheLag, virtv1alpha1.ReasonSnapshotting, "Snapshot taken; waiting for xapi's record of it")
	case ok:
		return ctrl.Result{}, nil
	case s.obj.Status.UUID != "":
		s.stopped = true
		s.ready(metav1.ConditionFalse, virtv1alpha1.ReasonSnapshotDeleted,
			"Snapshot %s was destroyed outside the operator; it is not taken again", s.obj.Status.UUID)
		return ctrl.Result{}, nil
	}
	vm, ok := vmservice.ByUUID(s.conn.Cache, s.xvm.Status.UUID)
	if !ok || vm.IsSnapshot || vm.IsTemplate {
		return r.wait(s, r.retry(), virtv1alpha1.ReasonVMNotInstalled, "XenVM %s has no VM yet", s.xvm.Name)
	}
	if s.obj.Spec.Memory && vm.PowerState != xenapi.PowerStateRunning {
		return r.wait(s, r.retry(), virtv1alpha1.ReasonNotRunning,
			"A snapshot with memory needs a Running VM; the VM is %s", vm.PowerState)
	}
	if d, msg := r.failures.wait(s.obj.UID, s.obj.Generation); d > 0 {
		return r.wait(s, d, virtv1alpha1.ReasonSnapshotFailed, "%s; %s", msg, retryNote(d, time.Now()))
	}
	ctrl.LoggerFrom(ctx).Info("Taking snapshot", "vm", vm.UUID, "memory", s.obj.Spec.Memory)
	ref, err := s.conn.Service.TakeSnapshot(ctx, vm, s.owner, vmservice.SnapshotRequest{Memory: s.obj.Spec.Memory})
	if err != nil {
		d := r.failures.failed(s.obj.UID, s.obj.Generation, err)
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonSnapshotFailed, "Snapshot", "%s", err.Error())
		return r.wait(s, d, virtv1alpha1.ReasonSnapshotFailed, "snapshot: %s; %s", err.Error(), retryNote(d, time.Now()))
	}
	r.failures.succeeded(s.obj.UID)
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "SnapshotTaken", "Snapshot", "Snapshot of VM %s taken", vm.UUID)
	if err := s.conn.Service.ClaimSnapshot(ctx, &xenapi.VM{Ref: ref, IsSnapshot: true}, s.owner, snapshotName(s), s.obj.Spec.Description); err != nil {
		return r.failClaim(s, err)
	}
	return r.wait(s, requeueCacheLag, virtv1alpha1.ReasonSnapshotting, "Snapshot taken; waiting for xapi's record of it")
}

func (r *XenVMSnapshotReconciler) failClaim(s *snapScope, err error) (ctrl.Result, error) {
	d := r.failures.failed(s.obj.UID, s.obj.Generation, err)
	return r.wait(s, d, virtv1alpha1.ReasonSnapshotFailed, "tag snapshot: %s; %s", err.Error(), retryNote(d, time.Now()))
}

// reconcileObserve tags a snapshot a crash left untagged, and reports it.
func (r *XenVMSnapshotReconciler) reconcileObserve(ctx context.Context, s *snapScope) (ctrl.Result, error) {
	snap, _ := vmservice.SnapshotOf(s.conn.Cache, s.owner)
	if !vmservice.SnapshotClaimed(snap, s.owner, snapshotName(s)) {
		if err := s.conn.Service.ClaimSnapshot(ctx, snap, s.owner, snapshotName(s), s.obj.Spec.Description); err != nil {
			return r.failClaim(s, err)
		}
	}
	st := &s.obj.Status
	st.UUID = snap.UUID
	t := metav1.NewTime(snap.SnapshotTime)
	st.CreationTime = &t
	st.Memory = snap.PowerState == xenapi.PowerStateSuspended
	st.PowerState = virtv1alpha1.PowerState(snap.SnapshotInfo["power-state-at-snapshot"])
	st.Size = resource.NewQuantity(vmservice.SnapshotSize(s.conn.Cache, snap), resource.BinarySI)
	s.ready(metav1.ConditionTrue, virtv1alpha1.ReasonSnapshotTaken, "Snapshot %s of VM %s", snap.UUID, s.xvm.Status.UUID)
	return ctrl.Result{}, nil
}

// reconcileDelete destroys the snapshot (Delete) or untags it (Retain).
// When the XenVM is gone or going, its own deletionPolicy has decided:
// Delete destroyed every snapshot of its VM, Retain released them.
func (r *XenVMSnapshotReconciler) reconcileDelete(ctx context.Context, s *snapScope) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(s.obj, snapshotFinalizer) {
		return ctrl.Result{}, nil
	}
	if s.xvm != nil && s.xvm.DeletionTimestamp.IsZero() {
		if s.conn == nil {
			return r.wait(s, r.retry(), virtv1alpha1.ReasonXenHostNotReady,
				"XenHost %s is not connected: the snapshot is deleted once it is", s.xvm.Spec.HostRef.Name)
		}
		if snap, ok := vmservice.SnapshotOf(s.conn.Cache, s.owner); ok {
			if res, err := r.dropSnapshot(ctx, s, snap); err != nil || !res.IsZero() {
				return res, err
			}
		}
	}
	patch := client.MergeFrom(s.obj.DeepCopy())
	controllerutil.RemoveFinalizer(s.obj, snapshotFinalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, s.obj, patch))
}

func (r *XenVMSnapshotReconciler) dropSnapshot(ctx context.Context, s *snapScope, snap *xenapi.VM) (ctrl.Result, error) {
	if vmservice.Pending(snap) {
		return r.wait(s, requeueCacheLag, virtv1alpha1.ReasonSnapshotting, "Waiting for xapi's record of the snapshot")
	}
	key := s.obj.UID + "/delete"
	if d, msg := r.failures.wait(key, s.obj.Generation); d > 0 {
		return r.wait(s, d, virtv1alpha1.ReasonDeleting, "%s; %s", msg, retryNote(d, time.Now()))
	}
	var err error
	if s.obj.Spec.DeletionPolicy == virtv1alpha1.DeletionPolicyRetain {
		err = s.conn.Service.ReleaseSnapshot(ctx, snap)
	} else {
		err = s.conn.Service.DestroySnapshot(ctx, snap)
	}
	if err != nil {
		d := r.failures.failed(key, s.obj.Generation, err)
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, "DeleteFailed", "Delete", "%s", err.Error())
		return r.wait(s, d, virtv1alpha1.ReasonDeleting, "delete: %s; %s", err.Error(), retryNote(d, time.Now()))
	}
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "Deleted", "Delete", "Snapshot %s %s", snap.UUID,
		map[bool]string{true: "left as it is, no longer managed", false: "destroyed with its disks"}[s.obj.Spec.DeletionPolicy == virtv1alpha1.DeletionPolicyRetain])
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller: XenVMSnapshots, their
// XenVMs, and the snapshots' changes the pools' event streams report.
func (r *XenVMSnapshotReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	b := r.Backoff
	if b.Duration <= 0 {
		b = failureBackoff
	}
	r.failures = newFailures(b)
	r.written = newStatusWrites[virtv1alpha1.XenVMSnapshotStatus]()
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &virtv1alpha1.XenVMSnapshot{}, indexVMRef,
		func(o client.Object) []string { return []string{o.(*virtv1alpha1.XenVMSnapshot).Spec.VMRef.Name} }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&virtv1alpha1.XenVMSnapshot{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&virtv1alpha1.XenVMSnapshot{}, writesShown(r.written)).
		Watches(&virtv1alpha1.XenVM{}, handler.EnqueueRequestsFromMapFunc(r.snapshotsOf), builder.WithPredicates(vmReadinessChanged)).
		WatchesRawSource(source.Channel(r.Conns.SnapshotEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(opts).
		Named("xenvmsnapshot").
		Complete(r)
}

// vmReadinessChanged passes the XenVM changes a waiting snapshot cares
// about: its VM's UUID, power state, management policy, deletion.
var vmReadinessChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*virtv1alpha1.XenVM)
		n, ok2 := e.ObjectNew.(*virtv1alpha1.XenVM)
		return !ok1 || !ok2 || o.Status.UUID != n.Status.UUID || o.Status.PowerState != n.Status.PowerState ||
			o.Spec.ManagementPolicy != n.Spec.ManagementPolicy || o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
	},
}

// snapshotsOf lists the XenVMSnapshots of a XenVM.
func (r *XenVMSnapshotReconciler) snapshotsOf(ctx context.Context, o client.Object) []reconcile.Request {
	return indexed(ctx, r.Client, &virtv1alpha1.XenVMSnapshotList{}, o, indexVMRef)
}
