package controller

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// XenVMReconciler installs a XenVM's VM once, keeps its configuration and
// power state as the spec says, reports what xapi says, and cleans up. The
// phases live in xenvm_install.go, xenvm_config.go, xenvm_power.go,
// xenvm_delete.go and xenvm_status.go.
type XenVMReconciler struct {
	client.Client
	// Conns finds the XenHosts' connections; its Secrets reads the Secrets
	// spec.cloudInit names.
	Conns    *Connections
	Recorder events.EventRecorder
	// APIReader reads a XenHost the cache does not hold (not labelled yet)
	// from the API server.
	APIReader client.Reader
	// Selector is the manager's shard (--xenhost-selector, nil: every
	// XenHost). The cache already holds only the shard's XenVMs; a XenVM
	// whose label does not name its XenHost has it set right, which may move
	// it to another shard.
	Selector labels.Selector
	// RetryInterval is how long to wait while the XenHost is missing or
	// cannot be used (default 30s); its recovery wakes the XenVMs sooner.
	RetryInterval time.Duration
	// Backoff is the wait after a failed XenAPI call, growing per XenVM
	// until a call succeeds or the spec changes (default 5s doubling to 5m).
	Backoff wait.Backoff

	failures *failures
	written  *statusWrites[virtv1alpha1.XenVMStatus]
	// inFlight paces the status writes of what an operation in flight
	// moves alone (setInFlight).
	inFlight *statusRefresh
	// finalized remembers the finalizers this process added, until the
	// informer shows them: a reconcile in between does not add it again.
	finalized *statusWrites[struct{}]
}

// vmScope is what one reconcile works with.
type vmScope struct {
	obj   *virtv1alpha1.XenVM
	host  *virtv1alpha1.XenHost // nil when it does not exist
	owner vmservice.Owner
	conn  *Conn
	// vm is the VM as this process knows it, once found; phases update it
	// with what they did.
	vm *xenapi.VM
	// failed marks a reconcile that could not do its work (observedGeneration
	// is not advanced); stopped ends the phases.
	failed, stopped bool
	// settling marks a reconcile that stopped to wait for the events of
	// this process's own writes, which wake the XenVM within moments: its
	// status goes out with the next reconcile's (see awaitOwnWrites).
	settling bool
	// note says what happened earlier in the reconcile, for the power
	// phase's condition.
	note string
	// plan is what the install makes of the template's disks.
	plan vmservice.DiskPlan
	// pending lists the changes that wait for the VM's next halt, for
	// RestartRequired.
	pending []string
}

func (s *vmScope) cond(typ string, status metav1.ConditionStatus, reason, format string, args ...any) {
	setCondition(&s.obj.Status.Conditions, s.obj.Generation, typ, status, reason, format, args...)
}

// stop ends the reconcile's phases after the current one.
func (s *vmScope) stop() { s.stopped = true }

func (s *vmScope) done() bool { return s.stopped }

// awaitOwnWrites stops the phases until the events of this process's last
// writes (a provision's disks, a new interface) have come: they wake the
// XenVM, usually within a second. The status is not written in between:
// the next reconcile writes it with what the device phases add, one
// request instead of two (an install would otherwise write "provisioned"
// and, a moment later, "starting"). The requeue bounds how long a lost
// event could hold it back.
func (s *vmScope) awaitOwnWrites() (ctrl.Result, error) {
	s.settling = true
	s.stop()
	return ctrl.Result{RequeueAfter: requeueCacheLag}, nil
}

// deferStatus tells whether the deferred patch may leave the status for
// the next reconcile: one that waits for its own writes' events, when
// nothing it must persist at once changed (an operation begun or ended:
// status.operation is how a restarted manager finds its task). A new
// status.uuid may wait: the VM's tag finds it after a crash.
func (s *vmScope) deferStatus(before *virtv1alpha1.XenVM) bool {
	return s.settling && s.obj.DeletionTimestamp.IsZero() &&
		equality.Semantic.DeepEqual(before.Status.Operation, s.obj.Status.Operation)
}

// Reconcile implements the XenVM control loop.
func (r *XenVMReconciler) Reconcile(ctx context.Context, req ctrl.Request) (retres ctrl.Result, reterr error) {
	// The writes still on their way to the cache, taken before the read
	// (statusWrites tells why this order).
	written, finalized := r.written.pending(req.NamespacedName), r.finalized.pending(req.NamespacedName)
	obj := &virtv1alpha1.XenVM{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if changed, err := ensureHostLabel(ctx, r.Client, obj, obj.Spec.HostRef.Name); err != nil || changed && !selects(r.Selector, obj.Labels) {
		return ctrl.Result{}, err // labelled for another shard, which takes it
	}
	host, err := r.hostOf(ctx, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	if host == nil && obj.DeletionTimestamp.IsZero() {
		// Not in the cache: missing, or not labelled yet (just created, or
		// the manager was upgraded from a version without the label). The
		// label's arrival wakes the XenVM; a missing XenHost is reported.
		if unlabelled, err := r.hostUnlabelled(ctx, obj); err != nil || unlabelled {
			return ctrl.Result{RequeueAfter: requeueConnecting}, err
		}
	}
	if msg := obj.Spec.DecodeError(); msg != "" && obj.DeletionTimestamp.IsZero() {
		return r.reconcileInvalid(ctx, obj, msg)
	}
	if _, added := finalized.newer(obj); obj.DeletionTimestamp.IsZero() &&
		!controllerutil.ContainsFinalizer(obj, vmFinalizer) && !added {
		// The finalizer goes on before anything is created in XenServer.
		patch := client.MergeFrom(obj.DeepCopy())
		controllerutil.AddFinalizer(obj, vmFinalizer)
		if err := r.Patch(ctx, obj, patch); err != nil {
			return ctrl.Result{}, err
		}
		r.finalized.record(obj, struct{}{})
	}

	if st, ok := written.newer(obj); ok {
		obj.Status = *st.DeepCopy() // the informer has not caught up with the last write
	}
	s := &vmScope{obj: obj, host: host,
		owner: vmservice.Owner{UID: string(obj.UID), Namespace: obj.Namespace, Name: obj.Name}}
	before := obj.DeepCopy()
	defer func() {
		r.observe(s)
		r.summarize(s)
		if reterr == nil && !s.failed {
			obj.Status.ObservedGeneration = obj.Generation
		}
		if reterr == nil && s.deferStatus(before) {
			return
		}
		if d := pace(r.inFlight, obj.UID, &before.Status, &obj.Status, setInFlight); d > 0 {
			retres = soonest(retres, ctrl.Result{RequeueAfter: d}) // what it moved goes out then
		}
		if err := patchStatus(ctx, r.Client, before, obj, xenVMStatus); err != nil {
			reterr = errors.Join(reterr, err)
		} else if obj.ResourceVersion != before.ResourceVersion {
			r.written.record(obj, *obj.Status.DeepCopy())
			r.inFlight.wrote(obj.UID)
		}
	}()

	if !obj.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}
	if obj.Spec.Observed() {
		// Status only: nothing of the VM is ever changed.
		return runPhases(ctx, s, r.reconcileConnection, r.reconcileInstall)
	}
	return runPhases(ctx, s,
		r.reconcileConnection,
		r.reconcileBackoff,
		r.reconcileInstall,
		r.reconcileOperation,
		r.reconcileRestore,
		r.reconcileConfig,
		r.reconcileNetwork,
		r.reconcileDisks,
		r.reconcileBootstrap,
		r.reconcileRestart,
		r.reconcilePlacement,
		r.reconcilePower,
	)
}

// setInFlight sets what an operation in flight moves in dst (its progress,
// the devices it plugs or unplugs) to src's, when both have one: the
// operation's end, a change of state, brings them with it.
func setInFlight(dst, src *virtv1alpha1.XenVMStatus) {
	if dst.Operation == nil || src.Operation == nil {
		return
	}
	dst.Operation.Progress = src.Operation.Progress
	for i := range min(len(dst.Disks), len(src.Disks)) {
		if dst.Disks[i].Name == src.Disks[i].Name {
			dst.Disks[i].Attached = src.Disks[i].Attached
		}
	}
	for i := range min(len(dst.NetworkInterfaces), len(src.NetworkInterfaces)) {
		if dst.NetworkInterfaces[i].Name == src.NetworkInterfaces[i].Name {
			dst.NetworkInterfaces[i].Attached = src.NetworkInterfaces[i].Attached
		}
	}
}

// hostOf returns the XenVM's XenHost, nil when it does not exist.
func (r *XenVMReconciler) hostOf(ctx context.Context, obj *virtv1alpha1.XenVM) (*virtv1alpha1.XenHost, error) {
	host := &virtv1alpha1.XenHost{}
	err := r.Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: obj.Spec.HostRef.Name}, host)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return host, err
}

// hostUnlabelled tells whether the XenVM's XenHost exists without the
// label the cache selects it by, reading it from the API server.
func (r *XenVMReconciler) hostUnlabelled(ctx context.Context, obj *virtv1alpha1.XenVM) (bool, error) {
	host := &metav1.PartialObjectMetadata{}
	host.SetGroupVersionKind(virtv1alpha1.GroupVersion.WithKind("XenHost"))
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: obj.Spec.HostRef.Name}, host)
	if err != nil {
		return false, client.IgnoreNotFound(err)
	}
	_, labelled := host.Labels[LabelXenHost]
	return !labelled, nil
}

func (r *XenVMReconciler) retry() time.Duration {
	if r.RetryInterval > 0 {
		return r.RetryInterval
	}
	return 30 * time.Second
}

// reconcileInvalid reports a spec the manager could not decode (a value an
// older CRD let through): nothing is done with half a spec, and nothing is
// retried until the spec changes. The API server may refuse to store even
// the status of such an object, so an event says it too. Deletion needs
// only fields that always decode, and goes on as usual.
func (r *XenVMReconciler) reconcileInvalid(ctx context.Context, obj *virtv1alpha1.XenVM, msg string) (ctrl.Result, error) {
	const format = "The stored spec cannot be used (%s): correct these fields"
	r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonInvalidSpec, "Decode", format, msg)
	before := obj.DeepCopy()
	setCondition(&obj.Status.Conditions, obj.Generation, virtv1alpha1.ConditionReady, metav1.ConditionFalse,
		virtv1alpha1.ReasonInvalidSpec, format, msg)
	obj.Status.Phase = virtv1alpha1.PhaseFailed
	if err := patchStatus(ctx, r.Client, before, obj, xenVMStatus); err != nil {
		ctrl.LoggerFrom(ctx).Info("Cannot report an invalid spec in the status", "error", err.Error())
	}
	return ctrl.Result{}, nil
}

// reconcileConnection finds the XenHost's connection; it owns HostAvailable.
// It never waits: a XenHost that is not connected is reported with its own
// reason, and its recovery wakes the XenVM.
func (r *XenVMReconciler) reconcileConnection(_ context.Context, s *vmScope) (ctrl.Result, error) {
	if s.host == nil {
		return r.unavailable(s, virtv1alpha1.ReasonXenHostNotFound, "XenHost %s not found", s.obj.Spec.HostRef.Name)
	}
	conn, ok := r.Conns.Get(keyOf(s.host))
	var err error
	if ok {
		err = conn.Healthy()
	}
	if ok && err == nil {
		r.failures.succeeded(hostKey(s))
		s.conn = conn
		s.cond(virtv1alpha1.ConditionHostAvailable, metav1.ConditionTrue, virtv1alpha1.ReasonConnected,
			"Connected to %s", conn.Client.Coordinator())
		return ctrl.Result{}, nil
	}
	if c := meta.FindStatusCondition(s.host.Status.Conditions, virtv1alpha1.ConditionSessionHealthy); c != nil && c.Status == metav1.ConditionFalse {
		return r.unavailable(s, c.Reason, "XenHost %s: %s", s.host.Name, c.Message)
	}
	if !ok || errors.Is(err, errNotSynced) || errors.Is(err, xenapi.ErrNotWatching) {
		return r.unavailable(s, virtv1alpha1.ReasonConnecting, "XenHost %s is connecting", s.host.Name)
	}
	return r.unavailable(s, reasonFor(err), "XenHost %s: %s", s.host.Name, err.Error())
}

// unavailable reports why the XenHost cannot be used, and stops. A pool
// that is only connecting (the manager started, the XenHost was just
// created) does not turn a HostAvailable that was true to false: its sync
// wakes the XenVM in seconds.
func (r *XenVMReconciler) unavailable(s *vmScope, reason, format string, args ...any) (ctrl.Result, error) {
	s.failed = true
	s.stop()
	if reason == virtv1alpha1.ReasonConnecting {
		if !meta.IsStatusConditionTrue(s.obj.Status.Conditions, virtv1alpha1.ConditionHostAvailable) {
			s.cond(virtv1alpha1.ConditionHostAvailable, metav1.ConditionFalse, reason, format, args...)
		}
		return ctrl.Result{RequeueAfter: requeueConnecting}, nil
	}
	s.cond(virtv1alpha1.ConditionHostAvailable, metav1.ConditionFalse, reason, format, args...)
	return ctrl.Result{RequeueAfter: r.retry()}, nil
}

// hostKey keys the waits after losing the pool apart from the backoff of
// failed steps, which they do not hold back.
func hostKey(s *vmScope) types.UID { return s.obj.UID + "/host" }

// reconcileBackoff holds the XenVM's changes back while it waits after a
// failed XenAPI call; the condition of the failed step says until when.
func (r *XenVMReconciler) reconcileBackoff(_ context.Context, s *vmScope) (ctrl.Result, error) {
	if d, _ := r.failures.wait(s.obj.UID, s.obj.Generation); d > 0 {
		s.failed = true
		s.stop()
		return ctrl.Result{RequeueAfter: d}, nil
	}
	return ctrl.Result{}, nil
}

// fail reports a failed XenAPI call in cond and waits the XenVM's growing
// backoff before the next attempt. Losing the pool is not the step's
// failure: HostAvailable says so instead.
func (r *XenVMReconciler) fail(s *vmScope, cond, reason, step string, err error) (ctrl.Result, error) {
	s.failed = true
	s.stop()
	if xenapi.IsConnectionError(err) || xenapi.IsAuthenticationFailed(err) || errors.Is(err, xenapi.ErrClosed) {
		// Not the step's failure, and not held back by the backoff: the
		// pool's recovery (its resync) wakes the XenVM; until then it looks
		// again after a growing wait.
		s.cond(virtv1alpha1.ConditionHostAvailable, metav1.ConditionFalse, reasonFor(err), "XenHost %s: %s", s.obj.Spec.HostRef.Name, err.Error())
		return ctrl.Result{RequeueAfter: r.failures.failed(hostKey(s), s.obj.Generation, err)}, nil
	}
	d := r.failures.failed(s.obj.UID, s.obj.Generation, err)
	s.cond(cond, metav1.ConditionFalse, reason, "%s: %s; %s", step, err.Error(), retryNote(d, time.Now()))
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, reason, step, "%s", err.Error())
	return ctrl.Result{RequeueAfter: d}, nil
}

// SetupWithManager registers the controller: XenVMs, their XenHosts, and
// the changes the pools' event streams report.
func (r *XenVMReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	b := r.Backoff
	if b.Duration <= 0 {
		b = failureBackoff
	}
	r.failures = newFailures(b)
	r.written = newStatusWrites[virtv1alpha1.XenVMStatus]()
	r.inFlight = newStatusRefresh(volatileStatusPeriod)
	r.finalized = newStatusWrites[struct{}]()
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &virtv1alpha1.XenVM{}, indexHostRef,
		func(o client.Object) []string { return []string{o.(*virtv1alpha1.XenVM).Spec.HostRef.Name} }); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &virtv1alpha1.XenVM{}, indexDataSecrets,
		func(o client.Object) []string { return dataSecrets(o.(*virtv1alpha1.XenVM)) }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&virtv1alpha1.XenVM{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&virtv1alpha1.XenVM{}, writesShown(r.written, r.finalized)).
		Watches(&virtv1alpha1.XenHost{}, handler.EnqueueRequestsFromMapFunc(r.vmsForHost),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, connectionChanged))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.vmsForSecret), builder.OnlyMetadata).
		WatchesRawSource(source.Channel(r.Conns.VMEvents, enqueueFirst)).
		WatchesRawSource(source.Channel(r.Conns.PoolEvents, handler.EnqueueRequestsFromMapFunc(r.vmsForHost))).
		WithOptions(opts).
		Named("xenvm").
		Complete(r)
}

// Queue priorities: what a pool's event stream reports (an install's next
// step, a VM changed behind the operator's back) goes before XenVMs seen for
// the first time, which go before installs waiting in line for room. Ten
// thousand XenVMs applied at once then neither hold back the ones on their
// way nor an out-of-band change; waiting in line costs no place.
const priorityXenAPIEvent = 10

var (
	priorityWaiting = handler.LowPriority
	// enqueueFirst enqueues the XenVMs of a pool's events ahead of the rest.
	enqueueFirst = handler.Funcs{GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: e.Object.GetNamespace(), Name: e.Object.GetName()}}
		if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
			pq.AddWithOpts(priorityqueue.AddOpts{Priority: new(priorityXenAPIEvent)}, req)
			return
		}
		q.Add(req)
	}}
)

// connectionChanged passes XenHost updates whose SessionHealthy condition
// changed: their XenVMs report it.
var connectionChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		health := func(o client.Object) (metav1.ConditionStatus, string) {
			h, ok := o.(*virtv1alpha1.XenHost)
			if !ok {
				return "", ""
			}
			c := meta.FindStatusCondition(h.Status.Conditions, virtv1alpha1.ConditionSessionHealthy)
			if c == nil {
				return "", ""
			}
			return c.Status, c.Reason
		}
		os, or := health(e.ObjectOld)
		ns, nr := health(e.ObjectNew)
		return os != ns || or != nr
	},
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

func (r *XenVMReconciler) vmsForHost(ctx context.Context, o client.Object) []reconcile.Request {
	return indexed(ctx, r.Client, &virtv1alpha1.XenVMList{}, o, indexHostRef)
}

// vmsForSecret wakes the XenVMs whose cloudInit names a Secret (created,
// changed or deleted: the watch is metadata-only).
func (r *XenVMReconciler) vmsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	return indexed(ctx, r.Client, &virtv1alpha1.XenVMList{}, o, indexDataSecrets)
}
