package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/intern"
)

// LabelXenHost names a XenVM's XenHost (its spec.hostRef.name) on the
// XenVM, and the XenHost itself on a XenHost. The manager's caches select
// both kinds by it: a shard (--xenhost-selector) lists and watches only
// its own XenHosts and their XenVMs. A MutatingAdmissionPolicy sets it on
// create and update where the cluster serves them; the operator's labeller
// sets it on objects created without it (older clusters, the policy not
// installed).
const LabelXenHost = "virt.xen-operator.io/xenhost"

// ParseShardSelector parses --xenhost-selector: a label selector on
// LabelXenHost only (e.g. "virt.xen-operator.io/xenhost in (pool-a,pool-b)"),
// since the same selector selects the XenHosts and their XenVMs. Empty: nil,
// every XenHost.
func ParseShardSelector(s string) (labels.Selector, error) {
	if s == "" {
		return nil, nil
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, err
	}
	reqs, _ := sel.Requirements()
	for _, r := range reqs {
		if r.Key() != LabelXenHost {
			return nil, fmt.Errorf("the selector may only use the label %s (which names the XenHost on XenHosts and XenVMs), not %s",
				LabelXenHost, r.Key())
		}
	}
	return sel, nil
}

// labelled is the selector of the manager's XenHost and XenVM caches: the
// objects that carry LabelXenHost and, with a shard selector, match it.
// Objects without the label reach only the labeller.
func labelled(shard labels.Selector) labels.Selector {
	has, err := labels.NewRequirement(LabelXenHost, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid key
	}
	sel := labels.NewSelector().Add(*has)
	if shard != nil {
		reqs, _ := shard.Requirements()
		sel = sel.Add(reqs...)
	}
	return sel
}

// unlabelled selects the objects the labeller has to label.
func unlabelled() labels.Selector {
	missing, err := labels.NewRequirement(LabelXenHost, selection.DoesNotExist, nil)
	if err != nil {
		panic(err)
	}
	return labels.NewSelector().Add(*missing)
}

// CacheOptions is the manager's cache: XenHosts and XenVMs of the watched
// namespaces (nil: all) that carry LabelXenHost and match the shard
// selector, and of Secrets only their names and versions (the controllers
// watch them metadata-only and read a referenced Secret from the API
// server when they need its data: no Secret's data is ever cached).
func CacheOptions(namespaces []string, shard labels.Selector) cache.Options {
	opts := cache.Options{
		// The informers keep what the controllers read: managedFields and
		// kubectl apply's copy of the last applied manifest are never read,
		// and are a large share of every object.
		DefaultTransform: stripUnread,
		ByObject: map[client.Object]cache.ByObject{
			&virtv1alpha1.XenVM{}:   {Label: labelled(shard), Transform: slimXenVM},
			&virtv1alpha1.XenHost{}: {Label: labelled(shard)},
			&corev1.Secret{}:        {Transform: secretNameOnly},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// ClientOptions is the manager's client: a Secret is always read from the
// API server, never through an informer on every Secret of the cluster.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

// lastApplied is the annotation kubectl apply keeps the applied manifest in.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// stripUnread drops from a cached object what no controller reads: its
// managed fields and kubectl apply's last-applied-configuration. Every
// write is a patch (or a status patch) computed between two copies of the
// cached object, so neither is ever sent back, nor lost on the server.
func stripUnread(in any) (any, error) {
	if o, err := meta.Accessor(in); err == nil {
		o.SetManagedFields(nil)
		if a := o.GetAnnotations(); a[lastApplied] != "" {
			delete(a, lastApplied)
			if len(a) == 0 {
				o.SetAnnotations(nil)
			}
		}
	}
	return in, nil
}

// slimXenVM is the XenVM informer's transform: stripUnread, then the
// values that repeat from XenVM to XenVM (the namespace, labels and
// finalizer, the template and host, the defaulted policies, the power
// state and phase, device and network names, the conditions) stored once.
// Ten thousand XenVMs held ten thousand copies of each, which the
// collector marks on every cycle: a Running XenVM of the scale benchmark
// takes 3.5 KB of heap in the informer without, 2.9 KB with
// (BenchmarkXenVMInformerHeap), some 6 MB less at ten thousand.
func slimXenVM(in any) (any, error) {
	vm, ok := in.(*virtv1alpha1.XenVM)
	if !ok {
		return stripUnread(in)
	}
	if _, err := stripUnread(vm); err != nil {
		return nil, err
	}
	vm.Namespace, vm.GenerateName = intern.String(vm.Namespace), intern.String(vm.GenerateName)
	vm.Labels, vm.Finalizers = intern.Map(vm.Labels), intern.Strings(vm.Finalizers)

	sp := &vm.Spec
	sp.HostRef.Name, sp.Template, sp.AffinityHost = intern.String(sp.HostRef.Name), intern.String(sp.Template), intern.String(sp.AffinityHost)
	sp.ManagementPolicy, sp.PowerState, sp.PowerOffMode = intern.String(sp.ManagementPolicy), intern.String(sp.PowerState), intern.String(sp.PowerOffMode)
	sp.DeletionPolicy, sp.HARestartPriority = intern.String(sp.DeletionPolicy), intern.String(sp.HARestartPriority)
	sp.OtherConfig, sp.Tags = intern.Map(sp.OtherConfig), intern.Strings(sp.Tags)
	for i := range sp.NetworkInterfaces {
		n := &sp.NetworkInterfaces[i]
		n.Name, n.Network = intern.String(n.Name), intern.String(n.Network)
	}
	for i := range sp.Disks {
		d := &sp.Disks[i]
		d.Name, d.Size, d.Storage, d.DeletionPolicy = intern.String(d.Name), intern.String(d.Size), intern.String(d.Storage), intern.String(d.DeletionPolicy)
	}

	st := &vm.Status
	st.PowerState, st.Phase, st.ResidentOn = intern.String(st.PowerState), intern.String(st.Phase), intern.String(st.ResidentOn)
	for i := range st.NetworkInterfaces {
		n := &st.NetworkInterfaces[i]
		n.Name, n.Network = intern.String(n.Name), intern.String(n.Network)
	}
	for i := range st.Disks {
		d := &st.Disks[i]
		d.Name, d.Storage = intern.String(d.Name), intern.String(d.Storage)
	}
	if st.Operation != nil {
		st.Operation.Name = intern.String(st.Operation.Name)
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.Type, c.Status, c.Reason, c.Message = intern.String(c.Type), intern.String(c.Status), intern.String(c.Reason), intern.String(c.Message)
	}
	return vm, nil
}

// secretNameOnly keeps of a watched Secret's metadata what the controllers
// map it by: its annotations can hold its data (kubectl apply's
// last-applied-configuration) and are dropped with the managed fields.
func secretNameOnly(in any) (any, error) {
	if o, err := meta.Accessor(in); err == nil {
		o.SetAnnotations(nil)
		o.SetManagedFields(nil)
		o.SetLabels(nil)
		o.SetOwnerReferences(nil)
		o.SetFinalizers(nil)
	}
	if s, ok := in.(*corev1.Secret); ok {
		s.Data, s.StringData = nil, nil
	}
	return in, nil
}

// Labeller sets LabelXenHost on the XenVMs and XenHosts that lack it and
// that the shard selector would select with it. It lists and watches only
// unlabelled objects, in a cache of its own: once labelled, an object
// leaves it, so it holds next to nothing. Every shard runs one; each labels
// only its own objects. The label is derived from fields that cannot
// change (the XenVM's spec.hostRef is immutable, a XenHost's name too).
type Labeller struct {
	// Client patches the labels.
	Client client.Client
	// Shard is the manager's --xenhost-selector (nil: every XenHost).
	Shard labels.Selector
	// Namespaces are the watched namespaces (nil: all).
	Namespaces []string
}

// SetupWithManager starts the labeller's cache and its two controllers.
func (l *Labeller) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	copts := cache.Options{
		HTTPClient: mgr.GetHTTPClient(), Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultLabelSelector: unlabelled(),
	}
	if len(l.Namespaces) > 0 {
		copts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range l.Namespaces {
			copts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(mgr.GetConfig(), copts)
	if err != nil {
		return err
	}
	if err := mgr.Add(c); err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("xenvm-labeller").WithOptions(opts).
		WatchesRawSource(source.Kind(c, &virtv1alpha1.XenVM{}, &handler.TypedEnqueueRequestForObject[*virtv1alpha1.XenVM]{})).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			obj := &virtv1alpha1.XenVM{}
			if err := c.Get(ctx, req.NamespacedName, obj); err != nil {
				return reconcile.Result{}, client.IgnoreNotFound(err)
			}
			return reconcile.Result{}, l.label(ctx, obj, obj.Spec.HostRef.Name)
		})); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).Named("xenhost-labeller").WithOptions(opts).
		WatchesRawSource(source.Kind(c, &virtv1alpha1.XenHost{}, &handler.TypedEnqueueRequestForObject[*virtv1alpha1.XenHost]{})).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			obj := &virtv1alpha1.XenHost{}
			if err := c.Get(ctx, req.NamespacedName, obj); err != nil {
				return reconcile.Result{}, client.IgnoreNotFound(err)
			}
			return reconcile.Result{}, l.label(ctx, obj, obj.Name)
		}))
}

// label sets LabelXenHost to host on obj if this shard owns host.
func (l *Labeller) label(ctx context.Context, obj client.Object, host string) error {
	if host == "" || !selects(l.Shard, map[string]string{LabelXenHost: host}) {
		return nil // another shard's
	}
	_, err := ensureHostLabel(ctx, l.Client, obj, host)
	return err
}

// ensureHostLabel sets LabelXenHost to host on obj, and tells whether it
// changed it.
func ensureHostLabel(ctx context.Context, c client.Client, obj client.Object, host string) (bool, error) {
	if obj.GetLabels()[LabelXenHost] == host {
		return false, nil
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	l := obj.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l[LabelXenHost] = host
	obj.SetLabels(l)
	ctrl.LoggerFrom(ctx).V(1).Info("Labelling with its XenHost", "xenhost", host)
	if err := c.Patch(ctx, obj, patch); err != nil && !apierrors.IsNotFound(err) {
		return false, err
	}
	return true, nil
}
