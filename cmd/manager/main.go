// Command manager runs the xen-operator controllers.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	controllers "github.com/xen-operator/xen-operator/internal/controller"
	"github.com/xen-operator/xen-operator/internal/memlimit"
	"github.com/xen-operator/xen-operator/internal/version"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(virtv1alpha1.AddToScheme(scheme))
}

func main() {
	var (
		metricsAddr          string
		probeAddr            string
		enableLeaderElection bool
		leaderElectionID     string
		leaderElectionNS     string
		secureMetrics        bool
		enableHTTP2          bool
		maxMutations         int
		maxReconciles        int
		hostSelector         string
		watchNamespaces      string
		pprofAddr            string
		memoryLimitRatio     float64
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0",
		"The address the metrics endpoint binds to, e.g. :8443 (https) or :8080 (http). 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "The address the probe endpoint binds to.")
	flag.BoolVar(&enableLeaderElection, "leader-elect", false,
		"Enable leader election, so that only one manager of a shard is active at a time.")
	flag.StringVar(&leaderElectionID, "leader-election-id", "xen-operator.virt.xen-operator.io",
		"The name of the leader election Lease; give each shard its own.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "",
		"The namespace of the leader election Lease; in a cluster, the manager's own. Needed when running outside one.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS with authentication and authorization. Set to false for plain HTTP.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false,
		"Enable HTTP/2 for the metrics server (off by default: CVE-2023-44487 / CVE-2023-39325).")
	flag.IntVar(&maxMutations, "xenapi-max-concurrent-operations", 16,
		"The most XenAPI operations (clone, start, shutdown, ...) in flight per XenServer pool.")
	flag.IntVar(&maxReconciles, "max-concurrent-reconciles", 16, "How many XenVMs (and XenHosts) are reconciled at once.")
	flag.StringVar(&hostSelector, "xenhost-selector", "",
		"A selector on the label "+controllers.LabelXenHost+" (which names the XenHost on XenHosts and XenVMs), "+
			"e.g. '"+controllers.LabelXenHost+" in (pool-a,pool-b)': this manager caches and handles only those XenHosts "+
			"and their XenVMs (sharding). Empty: all.")
	flag.StringVar(&watchNamespaces, "watch-namespaces", "",
		"Comma-separated namespaces whose XenHosts, XenVMs and Secrets the manager watches and reads. Empty: all namespaces.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "",
		"The address the pprof endpoint (/debug/pprof/) binds to, e.g. 127.0.0.1:6060. Empty: off.")
	flag.Float64Var(&memoryLimitRatio, "memory-limit-ratio", memlimit.DefaultRatio,
		"The share of the container's memory limit (its cgroup's) the Go runtime keeps its memory under: a soft limit, "+
			"so that the collector runs earlier instead of the heap growing to twice what is live. The rest holds the "+
			"manager's code pages (about 45 MiB), which the cgroup counts too. 0 turns it off; a GOMEMLIMIT in the "+
			"environment takes precedence.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	switch limit, err := memlimit.Apply(memoryLimitRatio); {
	case err == nil && limit > 0:
		setupLog.Info("Go soft memory limit set from the container's", "bytes", limit, "ratio", memoryLimitRatio)
	case errors.Is(err, memlimit.ErrBadRatio):
		setupLog.Error(err, "Invalid --memory-limit-ratio", "value", memoryLimitRatio)
		os.Exit(1)
	case err != nil && !errors.Is(err, memlimit.ErrNoLimit):
		setupLog.Error(err, "Reading the container's memory limit; no soft memory limit set")
	}

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOptions := metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		TLSOpts:       tlsOpts,
	}
	if secureMetrics {
		metricsOptions.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	selector, err := controllers.ParseShardSelector(hostSelector)
	if err != nil {
		setupLog.Error(err, "Invalid --xenhost-selector")
		os.Exit(1)
	}
	var namespaces []string
	for _, ns := range strings.Split(watchNamespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			namespaces = append(namespaces, ns)
		}
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controllers.CacheOptions(namespaces, selector),
		Client:                        controllers.ClientOptions(),
		Metrics:                       metricsOptions,
		HealthProbeBindAddress:        probeAddr,
		PprofBindAddress:              pprofAddr,
		LeaderElection:                enableLeaderElection,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		setupLog.Error(err, "Unable to create manager")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "Unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "Unable to set up ready check")
		os.Exit(1)
	}

	// One XenAPI session per endpoint and credentials for the whole process,
	// logged out when the manager stops.
	xenPool := xenapi.NewSessions(xenapi.Options{
		Originator:             version.Originator(),
		MaxConcurrentMutations: maxMutations,
		Registerer:             metrics.Registry,
		Logger:                 ctrl.Log.WithName("xenapi"),
	})
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		xenPool.Close(closeCtx)
		return nil
	})); err != nil {
		setupLog.Error(err, "Unable to register the XenAPI pool")
		os.Exit(1)
	}

	// Secrets are read from the API server, once per version the manager's
	// metadata-only watch of them shows.
	secrets := controllers.NewSecretReader(mgr.GetAPIReader(), mgr.GetCache())
	conns := controllers.NewConnections(xenPool, secrets, maxMutations)
	ctrlOpts := controller.Options{MaxConcurrentReconciles: maxReconciles}
	if err := (&controllers.XenHostReconciler{
		Client: mgr.GetClient(), Conns: conns, Recorder: mgr.GetEventRecorder("xenhost-controller"), Selector: selector,
	}).SetupWithManager(mgr, ctrlOpts); err != nil {
		setupLog.Error(err, "Unable to create controller", "controller", "XenHost")
		os.Exit(1)
	}
	if err := (&controllers.XenVMReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Conns: conns,
		Recorder: mgr.GetEventRecorder("xenvm-controller"), Selector: selector,
	}).SetupWithManager(mgr, ctrlOpts); err != nil {
		setupLog.Error(err, "Unable to create controller", "controller", "XenVM")
		os.Exit(1)
	}
	if err := (&controllers.Labeller{
		Client: mgr.GetClient(), Shard: selector, Namespaces: namespaces,
	}).SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: 4}); err != nil {
		setupLog.Error(err, "Unable to create controller", "controller", "Labeller")
		os.Exit(1)
	}

	if err := (&controllers.XenVMSnapshotReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Conns: conns, Recorder: mgr.GetEventRecorder("xenvmsnapshot-controller"),
	}).SetupWithManager(mgr, ctrlOpts); err != nil {
		setupLog.Error(err, "Unable to create controller", "controller", "XenVMSnapshot")
		os.Exit(1)
	}

	setupLog.Info("Starting manager", "version", version.Version)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "Problem running manager")
		os.Exit(1)
	}
}
