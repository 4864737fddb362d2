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
	"k8s.io/apimachinery/pkg/types"
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
)

// hostRefresh is how often a healthy XenHost is looked at again; the event
// stream reports host changes as they happen, so this costs no XenAPI call.
const hostRefresh = 5 * time.Minute

// XenHostReconciler keeps a XenHost's status in step with its host and its
// session, and applies spec.maintenance.
type XenHostReconciler struct {
	client.Client
	Conns    *Connections
	Recorder events.EventRecorder
	// Selector limits the XenHosts this manager handles (sharding).
	Selector labels.Selector
	// RetryInterval is how long to wait after a connection failure.
	RetryInterval time.Duration
}

// Reconcile implements the XenHost control loop.
func (r *XenHostReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	host := &virtv1alpha1.XenHost{}
	if err := r.Get(ctx, req.NamespacedName, host); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !selects(r.Selector, host.Labels) {
		return ctrl.Result{}, nil
	}
	if !host.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, host)
	}
	if controllerutil.AddFinalizer(host, hostFinalizer) {
		if err := r.Update(ctx, host); err != nil {
			return ctrl.Result{}, err
		}
	}

	before := host.DeepCopy()
	defer func() {
		host.Status.ObservedGeneration = host.Generation
		if err := patchStatus(ctx, r.Client, before, host, func(o client.Object) any { return o.(*virtv1alpha1.XenHost).Status }); err != nil {
			reterr = errors.Join(reterr, err)
		}
	}()
	return r.reconcileNormal(ctx, host)
}

func (r *XenHostReconciler) reconcileDelete(ctx context.Context, host *virtv1alpha1.XenHost) (ctrl.Result, error) {
	r.Conns.Release(ctx, host)
	if controllerutil.RemoveFinalizer(host, hostFinalizer) {
		return ctrl.Result{}, r.Update(ctx, host)
	}
	return ctrl.Result{}, nil
}

func (r *XenHostReconciler) retry() time.Duration {
	if r.RetryInterval > 0 {
		return r.RetryInterval
	}
	return 30 * time.Second
}

func (r *XenHostReconciler) reconcileNormal(ctx context.Context, host *virtv1alpha1.XenHost) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	gen := host.Generation
	unhealthy := func(err error) (ctrl.Result, error) {
		reason := reasonFor(err)
		if c := meta.FindStatusCondition(host.Status.Conditions, virtv1alpha1.ConditionSessionHealthy); c == nil || c.Reason != reason {
			// An event when the reason changes, not on every retry.
			r.Recorder.Eventf(host, nil, corev1.EventTypeWarning, reason, "Connect", "%s", err.Error())
		}
		setCondition(&host.Status.Conditions, gen, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionFalse, reason, "%s", err.Error())
		setCondition(&host.Status.Conditions, gen, virtv1alpha1.ConditionReady, metav1.ConditionFalse, reason, "%s", err.Error())
		log.Info("XenHost not connected", "reason", reason, "error", err.Error())
		return ctrl.Result{RequeueAfter: r.retry()}, nil
	}

	xc, inv, err := r.Conns.Connect(ctx, host)
	if err != nil {
		return unhealthy(err)
	}
	// The first call checks the credentials; later ones come from the cache.
	pool, _, err := inv.poolInfo(ctx)
	if err != nil {
		return unhealthy(err)
	}
	if !inv.waitSynced(ctx, 10*time.Second) {
		if err := xc.WatchHealth(); err != nil {
			return unhealthy(err)
		}
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err := xc.WatchHealth(); err != nil {
		return unhealthy(err)
	}
	setCondition(&host.Status.Conditions, gen, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionTrue,
		virtv1alpha1.ReasonConnected, "Connected to %s", xc.Coordinator())

	h := r.findHost(host, inv, pool)
	if h == nil {
		msg := fmt.Sprintf("the pool has no host at %s", host.Spec.Address)
		setCondition(&host.Status.Conditions, gen, virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonHostNotFound, "%s", msg)
		return ctrl.Result{RequeueAfter: hostRefresh}, nil
	}

	if err := r.applyMaintenance(ctx, host, xc, h); err != nil {
		setCondition(&host.Status.Conditions, gen, virtv1alpha1.ConditionReady, metav1.ConditionFalse, reasonFor(err), "%s", err.Error())
		r.Recorder.Eventf(host, nil, corev1.EventTypeWarning, "MaintenanceFailed", "Maintenance", "%s", err.Error())
		return ctrl.Result{RequeueAfter: r.retry()}, nil
	}

	r.observe(ctx, host, xc, pool, h)
	if host.Spec.Maintenance {
		setCondition(&host.Status.Conditions, gen, virtv1alpha1.ConditionReady, metav1.ConditionFalse,
			virtv1alpha1.ReasonMaintenance, "Host %s is disabled for maintenance", h.NameLabel)
	} else {
		setCondition(&host.Status.Conditions, gen, virtv1alpha1.ConditionReady, metav1.ConditionTrue,
			virtv1alpha1.ReasonConnected, "Host %s is connected", h.NameLabel)
	}
	return ctrl.Result{RequeueAfter: hostRefresh}, nil
}

func isTrue(conds []metav1.Condition, typ string) bool {
	for _, c := range conds {
		if c.Type == typ {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

// findHost is the host the spec's address names, or the coordinator when the
// address names the pool by another name.
func (r *XenHostReconciler) findHost(host *virtv1alpha1.XenHost, inv *inventory, pool *xenapi.PoolRecord) *xenapi.Host {
	u, err := url.Parse(host.Spec.Address)
	if err != nil {
		return nil
	}
	name := strings.ToLower(u.Hostname())
	for _, h := range inv.hostList() {
		if strings.ToLower(h.Address) == name || strings.ToLower(h.Hostname) == name || strings.ToLower(h.NameLabel) == name {
			return h
		}
	}
	return inv.host(pool.Master)
}

// applyMaintenance disables and evacuates the host, or enables it again.
func (r *XenHostReconciler) applyMaintenance(ctx context.Context, host *virtv1alpha1.XenHost, xc *xenapi.Client, h *xenapi.Host) error {
	log := ctrl.LoggerFrom(ctx)
	switch {
	case host.Spec.Maintenance && (h.Enabled || residentGuests(h) > 0):
		if h.Enabled {
			log.Info("Disabling host for maintenance", "host", h.NameLabel)
			if err := xc.DisableHost(ctx, h.Ref); err != nil {
				return err
			}
		}
		log.Info("Evacuating host", "host", h.NameLabel)
		if err := xc.EvacuateHost(ctx, h.Ref); err != nil {
			return err
		}
		r.Recorder.Eventf(host, nil, corev1.EventTypeNormal, "MaintenanceStarted", "Evacuate",
			"Host %s disabled and evacuated", h.NameLabel)
		h.Enabled = false
	case !host.Spec.Maintenance && !h.Enabled:
		log.Info("Enabling host", "host", h.NameLabel)
		if err := xc.EnableHost(ctx, h.Ref); err != nil {
			return err
		}
		r.Recorder.Eventf(host, nil, corev1.EventTypeNormal, "MaintenanceEnded", "Enable", "Host %s enabled", h.NameLabel)
		h.Enabled = true
	}
	return nil
}

// residentGuests counts the VMs on a host besides its control domain.
func residentGuests(h *xenapi.Host) int {
	n := 0
	for _, ref := range h.ResidentVMs {
		if ref != h.ControlDomain {
			n++
		}
	}
	return n
}

func (r *XenHostReconciler) observe(ctx context.Context, host *virtv1alpha1.XenHost, xc *xenapi.Client, pool *xenapi.PoolRecord, h *xenapi.Host) {
	st := &host.Status
	st.UUID, st.NameLabel, st.Hostname, st.Address = h.UUID, h.NameLabel, h.Hostname, h.Address
	st.SoftwareVersion = h.SoftwareVersion
	st.ProductVersion = h.SoftwareVersion["product_version"]
	st.APIVersion = fmt.Sprintf("%d.%d", h.APIVersionMajor, h.APIVersionMinor)
	enabled := h.Enabled
	st.Enabled = &enabled
	st.PoolName = pool.NameLabel
	st.Coordinator = xc.Coordinator()
	st.ResidentVMs = int32(min(residentGuests(h), 1<<30)) //nolint:gosec // bounded above
	if n, err := fmt.Sscan(h.CPUInfo["cpu_count"], &st.CPUCount); n != 1 || err != nil {
		st.CPUCount = 0
	}
	if st.MemoryTotalBytes == 0 && h.Metrics != "" {
		// The host's memory does not change: read it once.
		if m, err := xc.HostMetrics(ctx, h.Metrics); err == nil {
			st.MemoryTotalBytes = m.MemoryTotal
		}
	}
}

// SetupWithManager registers the controller: XenHosts, their Secrets, and
// the host changes the event stream reports.
func (r *XenHostReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
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
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.hostsForSecret)).
		WatchesRawSource(source.Channel(r.Conns.HostEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(opts).
		Named("xenhost").
		Complete(r)
}

func (r *XenHostReconciler) hostsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	hosts := &virtv1alpha1.XenHostList{}
	if err := r.List(ctx, hosts, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexSecretRef: o.GetName()}); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(hosts.Items))
	for _, h := range hosts.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: h.Namespace, Name: h.Name}})
	}
	return out
}
