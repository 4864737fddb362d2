package controller

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// XenHostReconciler keeps a XenHost's connection (the shared session and the
// pool's cache), reports the host and the session's health, and applies
// spec.maintenance.
type XenHostReconciler struct {
	client.Client
	Conns    *Connections
	Recorder events.EventRecorder
	// Selector is the manager's shard (--xenhost-selector, nil: every
	// XenHost). The cache already holds only the shard's XenHosts; one
	// whose label does not name it has it set right.
	Selector labels.Selector
	// RetryInterval is how long to wait after a connection failure (default
	// 30s); the session's own login backoff paces the logins.
	RetryInterval time.Duration
	// CountersPeriod is how often at most a status change of the counters
	// alone (residentVMs, evacuation.movedVMs), which move with every
	// guest, is written (default 10s). A change of state (conditions,
	// enabled, versions, an evacuation's start and end) is written at once.
	CountersPeriod time.Duration

	counters *statusRefresh
	written  *statusWrites[virtv1alpha1.XenHostStatus]
}

// hostScope is what one XenHost reconcile works with.
type hostScope struct {
	obj  *virtv1alpha1.XenHost
	conn *Conn
	h    *xenapi.Host
	// blocked is why the host is not Ready besides the session (a reason and
	// a message), for the summary.
	blocked, blockedMsg string
	failed, stopped     bool
}

func (s *hostScope) cond(typ string, status metav1.ConditionStatus, reason, format string, args ...any) {
	setCondition(&s.obj.Status.Conditions, s.obj.Generation, typ, status, reason, format, args...)
}

func (s *hostScope) done() bool { return s.stopped }

// block stops the phases with a reason the host is not Ready.
func (s *hostScope) block(reason, format string, args ...any) {
	s.blocked, s.blockedMsg, s.stopped = reason, fmt.Sprintf(format, args...), true
}

// Reconcile implements the XenHost control loop.
func (r *XenHostReconciler) Reconcile(ctx context.Context, req ctrl.Request) (retres ctrl.Result, reterr error) {
	written := r.written.pending(req.NamespacedName) // before the read: statusWrites tells why
	host := &virtv1alpha1.XenHost{}
	if err := r.Get(ctx, req.NamespacedName, host); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if changed, err := ensureHostLabel(ctx, r.Client, host, host.Name); err != nil || changed && !selects(r.Selector, host.Labels) {
		return ctrl.Result{}, err // labelled for another shard, which takes it
	}
	if !host.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, host)
	}
	if !controllerutil.ContainsFinalizer(host, hostFinalizer) {
		patch := client.MergeFrom(host.DeepCopy())
		controllerutil.AddFinalizer(host, hostFinalizer)
		if err := r.Patch(ctx, host, patch); err != nil {
			return ctrl.Result{}, err
		}
	}

	if st, ok := written.newer(host); ok {
		// The informer has not caught up with the last write, and a status
		// write wakes no XenHost: diffed against the older cached status,
		// a reconcile that finds what the cache shows would write nothing
		// and leave the last write (Connecting) in place.
		host.Status = *st.DeepCopy()
	}
	s := &hostScope{obj: host}
	before := host.DeepCopy()
	defer func() {
		r.summarize(s)
		if reterr == nil && !s.failed {
			host.Status.ObservedGeneration = host.Generation
		}
		if d := pace(r.counters, host.UID, &before.Status, &host.Status, setHostCounters); d > 0 {
			retres = soonest(retres, ctrl.Result{RequeueAfter: d}) // the counters go out then
		}
		if err := patchStatus(ctx, r.Client, before, host, xenHostStatus); err != nil {
			reterr = errors.Join(reterr, err)
		} else if host.ResourceVersion != before.ResourceVersion {
			r.written.record(host, *host.Status.DeepCopy())
			r.counters.wrote(host.UID)
		}
	}()
	return runPhases(ctx, s, r.reconcileSession, r.reconcileHost, r.reconcileMaintenance, r.reconcileFacts)
}

func (r *XenHostReconciler) reconcileDelete(ctx context.Context, host *virtv1alpha1.XenHost) (ctrl.Result, error) {
	r.Conns.Release(ctx, host)
	patch := client.MergeFrom(host.DeepCopy())
	if controllerutil.RemoveFinalizer(host, hostFinalizer) {
		return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, host, patch))
	}
	return ctrl.Result{}, nil
}

func (r *XenHostReconciler) retry() time.Duration {
	if r.RetryInterval > 0 {
		return r.RetryInterval
	}
	return 30 * time.Second
}

// reconcileSession connects the XenHost and checks its session through the
// event stream; it owns SessionHealthy.
func (r *XenHostReconciler) reconcileSession(ctx context.Context, s *hostScope) (ctrl.Result, error) {
	if msg := s.obj.Spec.DecodeError(); msg != "" {
		return r.unhealthy(ctx, s, &connectError{reason: virtv1alpha1.ReasonInvalidSpec,
			err: fmt.Errorf("the stored spec cannot be used (%s): correct these fields", msg)})
	}
	conn, err := r.Conns.Connect(ctx, s.obj)
	if err != nil {
		return r.unhealthy(ctx, s, err)
	}
	s.conn = conn
	switch err := conn.Healthy(); {
	case err == nil:
	case errors.Is(err, xenapi.ErrNotWatching), errors.Is(err, errNotSynced):
		// The first login and full sync are under way; the sync wakes the XenHost.
		s.cond(virtv1alpha1.ConditionSessionHealthy, metav1.ConditionUnknown, virtv1alpha1.ReasonConnecting,
			"Connecting to %s", conn.Client.Coordinator())
		s.block(virtv1alpha1.ReasonConnecting, "Connecting to %s", conn.Client.Coordinator())
		s.failed = true
		return ctrl.Result{RequeueAfter: requeueBusy}, nil
	default:
		return r.unhealthy(ctx, s, err)
	}
	s.cond(virtv1alpha1.ConditionSessionHealthy, metav1.ConditionTrue, virtv1alpha1.ReasonConnected,
		"Connected to %s", conn.Client.Coordinator())
	return ctrl.Result{}, nil
}

// unhealthy reports a connection failure, with an event when its reason
// changes (not on every retry).
func (r *XenHostReconciler) unhealthy(ctx context.Context, s *hostScope, err error) (ctrl.Result, error) {
	reason := reasonFor(err)
	if c := meta.FindStatusCondition(s.obj.Status.Conditions, virtv1alpha1.ConditionSessionHealthy); c == nil || c.Reason != reason {
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, reason, "Connect", "%s", err.Error())
	}
	s.cond(virtv1alpha1.ConditionSessionHealthy, metav1.ConditionFalse, reason, "%s", err.Error())
	ctrl.LoggerFrom(ctx).Info("XenHost not connected", "reason", reason, "error", err.Error())
	s.failed, s.stopped = true, true
	return ctrl.Result{RequeueAfter: r.retry()}, nil
}

// reconcileHost finds the host the spec's address names, or the coordinator
// when the address names the pool by another name.
func (r *XenHostReconciler) reconcileHost(_ context.Context, s *hostScope) (ctrl.Result, error) {
	name := ""
	if u, err := url.Parse(s.obj.Spec.Address); err == nil {
		name = strings.ToLower(u.Hostname())
	}
	for _, h := range s.conn.Cache.Hosts.List() {
		if strings.ToLower(h.Address) == name || strings.ToLower(h.Hostname) == name || strings.ToLower(h.NameLabel) == name {
			s.h = h
			return ctrl.Result{}, nil
		}
	}
	if pool, ok := s.conn.Cache.Pool(); ok {
		if h, ok := s.conn.Cache.Host(pool.Master); ok {
			s.h = h
			return ctrl.Result{}, nil
		}
	}
	s.block(virtv1alpha1.ReasonHostNotFound, "the pool has no host at %s", s.obj.Spec.Address)
	return ctrl.Result{RequeueAfter: requeueHostRefresh}, nil
}

// reconcileMaintenance disables and evacuates the host, or enables it
// again. The evacuation runs as a task that no worker waits for: its end
// (and each VM leaving the host) wakes the XenHost, and status.evacuation
// counts the VMs moved.
func (r *XenHostReconciler) reconcileMaintenance(ctx context.Context, s *hostScope) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	h, svc := s.h, s.conn.Service
	var err error
	switch {
	case s.obj.Spec.Maintenance && evacuating(s.obj):
		return r.followEvacuation(ctx, s)
	case s.obj.Spec.Maintenance && (h.Enabled || s.guests() > 0):
		if h.Enabled {
			log.Info("Disabling host for maintenance", "host", h.NameLabel)
			if err = svc.SetHostEnabled(ctx, h, false); err == nil {
				h = cloneHost(h, false)
			}
		}
		if err == nil && s.guests() > 0 {
			log.Info("Evacuating host", "host", h.NameLabel)
			var ref string
			if ref, err = svc.BeginEvacuate(ctx, h); err == nil {
				s.conn.Cache.TrackTask(ref, hostWakePrefix+keyOf(s.obj).String(), "evacuate")
				s.obj.Status.Evacuation = &virtv1alpha1.Evacuation{StartTime: metav1.Now(), TaskRef: ref,
					VMsAtStart: s.guestCount()}
				s.h = h
				return ctrl.Result{RequeueAfter: requeueOperation}, nil
			}
		}
	case !s.obj.Spec.Maintenance && !h.Enabled:
		log.Info("Enabling host", "host", h.NameLabel)
		if err = svc.SetHostEnabled(ctx, h, true); err == nil {
			r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "MaintenanceEnded", "Enable", "Host %s enabled", h.NameLabel)
			h = cloneHost(h, true)
		}
	}
	if err != nil {
		return r.maintenanceFailed(s, err)
	}
	s.h = h
	return ctrl.Result{}, nil
}

// hostWakePrefix starts the cache's wake keys of XenHosts (tasks a XenHost
// follows), to tell them from XenVMs'.
const hostWakePrefix = "xenhost:"

func evacuating(obj *virtv1alpha1.XenHost) bool {
	e := obj.Status.Evacuation
	return e != nil && e.CompletionTime == nil && e.TaskRef != ""
}

// followEvacuation counts the VMs moved so far and, once the task ended,
// records its outcome.
func (r *XenHostReconciler) followEvacuation(ctx context.Context, s *hostScope) (ctrl.Result, error) {
	e := s.obj.Status.Evacuation
	s.conn.Cache.TrackTask(e.TaskRef, hostWakePrefix+keyOf(s.obj).String(), "evacuate") // after a restart, too
	task, state, silent := s.conn.Cache.Task(e.TaskRef)
	if state == cache.TaskUnknown && silent >= taskSilence {
		t, err := s.conn.Service.Task(ctx, e.TaskRef)
		switch {
		case xenapi.IsHandleInvalid(err):
			state = cache.TaskGone
		case err != nil:
			return r.maintenanceFailed(s, err)
		default:
			task, state = t, cache.TaskKnown
		}
	}
	// Counted after the task is read: the VMs' moves come before the
	// task's end in the event stream, so an ended task's count has them all.
	e.MovedVMs = max(e.VMsAtStart-s.guestCount(), 0)
	var err error
	switch {
	case state == cache.TaskUnknown || state == cache.TaskKnown && task.Status == xenapi.TaskPending:
		return ctrl.Result{RequeueAfter: min(requeueOperation, taskSilence)}, nil
	case state == cache.TaskKnown:
		err = s.conn.Service.FinishTask(ctx, task)
	}
	// Done, or gone (xapi restarted): the host's resident VMs say the rest.
	now := metav1.Now()
	e.CompletionTime = &now
	s.conn.Cache.ForgetTask(e.TaskRef)
	if err != nil {
		e.Error = err.Error()
		return r.maintenanceFailed(s, err)
	}
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "MaintenanceStarted", "Evacuate",
		"Host %s disabled and evacuated: %d VMs moved", s.h.NameLabel, e.MovedVMs)
	return ctrl.Result{RequeueAfter: requeueBusy}, nil // looks again: VMs started meanwhile go too
}

func (r *XenHostReconciler) maintenanceFailed(s *hostScope, err error) (ctrl.Result, error) {
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, "MaintenanceFailed", "Maintenance", "%s", err.Error())
	s.block(reasonFor(err), "%s", err.Error())
	s.failed = true
	return ctrl.Result{RequeueAfter: r.retry()}, nil
}

func cloneHost(h *xenapi.Host, enabled bool) *xenapi.Host {
	c := *h
	c.Enabled = enabled
	return &c
}

// setHostCounters sets the counters of dst, which move with the guests, to
// those of src.
func setHostCounters(dst, src *virtv1alpha1.XenHostStatus) {
	dst.ResidentVMs = src.ResidentVMs
	if dst.Evacuation != nil && src.Evacuation != nil {
		dst.Evacuation.MovedVMs = src.Evacuation.MovedVMs
	}
}

// guestCount is guests for a status field.
func (s *hostScope) guestCount() int32 {
	return int32(min(s.guests(), 1<<30)) //nolint:gosec // bounded above
}

// guests counts the VMs on the host besides its control domain.
func (s *hostScope) guests() int { return s.conn.Cache.GuestsOn(s.h.Ref) }

// reconcileFacts reports the host's facts.
func (r *XenHostReconciler) reconcileFacts(ctx context.Context, s *hostScope) (ctrl.Result, error) {
	st, h := &s.obj.Status, s.h
	st.UUID, st.NameLabel, st.Hostname, st.Address = h.UUID, h.NameLabel, h.Hostname, h.Address
	st.SoftwareVersion = h.SoftwareVersion
	st.ProductVersion = h.SoftwareVersion["product_version"]
	st.APIVersion = fmt.Sprintf("%d.%d", h.APIVersionMajor, h.APIVersionMinor)
	enabled := h.Enabled
	st.Enabled = &enabled
	if pool, ok := s.conn.Cache.Pool(); ok {
		st.PoolName = pool.NameLabel
	}
	st.Coordinator = s.conn.Client.Coordinator()
	st.ResidentVMs = s.guestCount()
	if n, err := fmt.Sscan(h.CPUInfo["cpu_count"], &st.CPUCount); n != 1 || err != nil {
		st.CPUCount = 0
	}
	if st.MemoryTotalBytes == 0 {
		// The host's memory does not change: read it once.
		if m, err := s.conn.Service.HostMemory(ctx, h); err == nil {
			st.MemoryTotalBytes = m
		}
	}
	return ctrl.Result{RequeueAfter: requeueHostRefresh}, nil
}

// summarize sets Ready: the one place that writes it.
func (r *XenHostReconciler) summarize(s *hostScope) {
	session := meta.FindStatusCondition(s.obj.Status.Conditions, virtv1alpha1.ConditionSessionHealthy)
	switch {
	case session != nil && session.Status == metav1.ConditionFalse:
		s.cond(virtv1alpha1.ConditionReady, metav1.ConditionFalse, session.Reason, "%s", session.Message)
	case s.blocked != "":
		s.cond(virtv1alpha1.ConditionReady, metav1.ConditionFalse, s.blocked, "%s", s.blockedMsg)
	case s.h == nil:
		// A reconcile that stopped before the host (cannot happen without
		// a reason above); leave Ready as it was.
	case s.obj.Spec.Maintenance:
		s.cond(virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonMaintenance,
			"Host %s is disabled for maintenance", s.h.NameLabel)
	default:
		s.cond(virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected, "Host %s is connected", s.h.NameLabel)
	}
}

// SetupWithManager registers the controller: XenHosts, their Secrets (a
// metadata-only watch: Conns reads the data from the API server), and
// the host changes the event stream reports.
func (r *XenHostReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	r.counters = newStatusRefresh(r.CountersPeriod)
	r.written = newStatusWrites[virtv1alpha1.XenHostStatus]()
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &virtv1alpha1.XenHost{}, indexSecretRef,
		func(o client.Object) []string {
			h := o.(*virtv1alpha1.XenHost)
			refs := []string{h.Spec.CredentialsSecretRef.Name}
			if h.Spec.TLS != nil && h.Spec.TLS.CASecretRef != nil {
				refs = append(refs, h.Spec.TLS.CASecretRef.Name)
			}
			return refs
		}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&virtv1alpha1.XenHost{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Watches(&virtv1alpha1.XenHost{}, writesShown(r.written)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.hostsForSecret), builder.OnlyMetadata).
		WatchesRawSource(source.Channel(r.Conns.HostEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(opts).
		Named("xenhost").
		Complete(r)
}

func (r *XenHostReconciler) hostsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	return indexed(ctx, r.Client, &virtv1alpha1.XenHostList{}, o, indexSecretRef)
}
