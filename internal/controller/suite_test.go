package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xapisim"
	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/test/harness"
)

// These tests use Ginkgo (BDD-style Go testing framework). Refer to
// http://onsi.github.io/ginkgo/ to learn more about Ginkgo.

var (
	ctx       context.Context
	cancel    context.CancelFunc
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	// sim is the simulated pool most specs use; xen reads it for assertions.
	sim *xapisim.Server
	xen *xenapi.Client
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.TODO())
	Expect(virtv1alpha1.AddToScheme(scheme.Scheme)).To(Succeed())

	By("bootstrapping test environment")
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(cfg).NotTo(BeNil())

	// A client that reads straight from the API server, for assertions.
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme.Scheme})
	Expect(err).NotTo(HaveOccurred())

	By("starting a simulated pool of two hosts")
	sim = startSim(xapisim.Config{Hosts: 2, OpDuration: 30 * time.Millisecond, BootDelay: 50 * time.Millisecond})
	testPool := xenapi.NewSessions(xenapi.Options{Originator: "controller-tests"})
	DeferCleanup(func() { testPool.Close(context.Background()) })
	xen, err = testPool.Client("tests", xenapi.Endpoint{URL: sim.URL(), Username: "root", Password: "xenserver"})
	Expect(err).NotTo(HaveOccurred())

	By("starting the manager")
	startManager(ctx, nil)
})

var _ = AfterSuite(func() {
	By("tearing down the test environment")
	cancel()
	Expect(testEnv.Stop()).To(Succeed())
})

func startSim(c xapisim.Config) *xapisim.Server {
	if c.AuthFailureDelay == 0 {
		c.AuthFailureDelay = 10 * time.Millisecond
	}
	s, err := xapisim.New(c)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(s.Close)
	return s
}

// testBackoff is the manager's failure backoff, 100 times faster than the
// real one (10s doubling to 5m): 100ms doubling to 3s.
var testBackoff = wait.Backoff{Duration: failureBackoff.Duration / 100, Factor: 2, Steps: 1 << 30, Cap: failureBackoff.Cap / 100}

// isolatedHosts are the XenHost names the suite's manager leaves to the
// managers specs start themselves (shards, a namespaced manager).
var isolatedHosts = []string{"shard-a", "shard-b", "ns-only", "admission-only", "requests", "stale-view"}

// startManager runs the controllers, as cmd/manager wires them, until ctx
// ends: every XenHost but the isolated ones, in every namespace.
func startManager(ctx context.Context, cfgMutator func(*XenVMReconciler, *XenHostReconciler)) {
	shard, err := ParseShardSelector(LabelXenHost + " notin (" + strings.Join(isolatedHosts, ",") + ")")
	Expect(err).NotTo(HaveOccurred())
	startManagerWith(ctx, managerOptions{config: cfg, shard: shard}, cfgMutator)
}

// startShard runs, until the spec ends, a manager of its own for one of
// the isolatedHosts: its shard selects that XenHost's name alone (o.config
// defaults to the test environment's).
func startShard(host string, o managerOptions) ctrl.Manager {
	GinkgoHelper()
	mctx, stop := context.WithCancel(ctx)
	DeferCleanup(stop)
	shard, err := ParseShardSelector(LabelXenHost + "=" + host)
	Expect(err).NotTo(HaveOccurred())
	o.shard = shard
	if o.config == nil {
		o.config = cfg
	}
	return startManagerWith(mctx, o, nil)
}

// setPassword changes the password in a XenHost's credentials Secret.
func setPassword(host *virtv1alpha1.XenHost, password string) {
	GinkgoHelper()
	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: host.Namespace, Name: host.Spec.CredentialsSecretRef.Name}
	Expect(k8sClient.Get(ctx, key, secret)).To(Succeed())
	secret.StringData = map[string]string{"password": password}
	Expect(k8sClient.Update(ctx, secret)).To(Succeed())
}

// managerOptions are the flags of a manager a spec starts.
type managerOptions struct {
	config     *rest.Config
	namespaces []string
	shard      labels.Selector
	// hostTransform, when set, is the XenHost informer's transform (a
	// spec's informer that lags behind).
	hostTransform toolscache.TransformFunc
}

// startManagerWith runs the controllers as cmd/manager wires them, with o's
// watched namespaces and shard, until ctx ends.
func startManagerWith(ctx context.Context, o managerOptions, cfgMutator func(*XenVMReconciler, *XenHostReconciler)) ctrl.Manager {
	cacheOpts := CacheOptions(o.namespaces, o.shard)
	for obj, by := range cacheOpts.ByObject {
		if _, ok := obj.(*virtv1alpha1.XenHost); ok && o.hostTransform != nil {
			by.Transform = o.hostTransform
			cacheOpts.ByObject[obj] = by
		}
	}
	mgr, err := ctrl.NewManager(o.config, ctrl.Options{
		Scheme:                 scheme.Scheme,
		Cache:                  cacheOpts,
		Client:                 ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	pool := xenapi.NewSessions(xenapi.Options{
		Originator: "xen-operator/test", LoginBackoff: 500 * time.Millisecond,
		EventTimeout: 5 * time.Second, TaskPollInterval: time.Second,
		Logger: ctrl.Log.WithName("xenapi"),
	})
	conns := NewConnections(pool, NewSecretReader(mgr.GetAPIReader(), mgr.GetCache()), 16)
	hostR := &XenHostReconciler{Client: mgr.GetClient(), Conns: conns, Recorder: mgr.GetEventRecorder("xenhost-controller"), RetryInterval: time.Second,
		Selector: o.shard}
	vmR := &XenVMReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Conns: conns, Recorder: mgr.GetEventRecorder("xenvm-controller"),
		RetryInterval: time.Second, Backoff: testBackoff, Selector: o.shard}
	if cfgMutator != nil {
		cfgMutator(vmR, hostR)
	}
	skip := true
	opts := controller.Options{MaxConcurrentReconciles: 8, SkipNameValidation: &skip}
	Expect(hostR.SetupWithManager(mgr, opts)).To(Succeed())
	Expect(vmR.SetupWithManager(mgr, opts)).To(Succeed())
	snapR := &XenVMSnapshotReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Conns: conns,
		Recorder: mgr.GetEventRecorder("xenvmsnapshot-controller"), RetryInterval: time.Second, Backoff: testBackoff}
	Expect(snapR.SetupWithManager(mgr, opts)).To(Succeed())
	Expect((&Labeller{Client: mgr.GetClient(), Shard: o.shard, Namespaces: o.namespaces}).SetupWithManager(mgr, opts)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
		pool.Close(context.Background())
	}()
	return mgr
}

// newNamespace creates a namespace for one spec.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// newHost creates a credentials Secret and a XenHost for url in ns.
func newHost(ns, name, url, password string) *virtv1alpha1.XenHost {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-credentials"},
		StringData: map[string]string{"username": "root", "password": password},
	}
	Expect(k8sClient.Create(ctx, secret)).To(Succeed())
	host := &virtv1alpha1.XenHost{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: virtv1alpha1.XenHostSpec{
			Address:              url,
			AllowInsecureHTTP:    strings.HasPrefix(url, "http://"),
			CredentialsSecretRef: virtv1alpha1.LocalSecretReference{Name: secret.Name},
		},
	}
	Expect(k8sClient.Create(ctx, host)).To(Succeed())
	return host
}

func newVM(ns, name, host, template string, power virtv1alpha1.PowerState) *virtv1alpha1.XenVM {
	vm := &virtv1alpha1.XenVM{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: virtv1alpha1.XenVMSpec{
			HostRef:    virtv1alpha1.LocalObjectReference{Name: host},
			Template:   template,
			PowerState: power,
		},
	}
	Expect(k8sClient.Create(ctx, vm)).To(Succeed())
	return vm
}

func getVM(g Gomega, obj *virtv1alpha1.XenVM) *virtv1alpha1.XenVM {
	out := &virtv1alpha1.XenVM{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), out)).To(Succeed())
	return out
}

func condition(conds []metav1.Condition, typ string) metav1.Condition {
	for _, c := range conds {
		if c.Type == typ {
			return c
		}
	}
	return metav1.Condition{}
}

// haveCondition matches a condition list holding typ with status and reason.
func haveCondition(typ string, status metav1.ConditionStatus, reason string) OmegaMatcher {
	return ContainElement(And(HaveField("Type", typ), HaveField("Status", status), HaveField("Reason", reason)))
}

// waitPower waits until the XenVM reports power, in sync, and the simulator agrees.
func waitPower(obj *virtv1alpha1.XenVM, power virtv1alpha1.PowerState) {
	GinkgoHelper()
	waitPowerIn(xen, obj, power)
}

// waitPowerIn is waitPower on the pool xen reaches.
func waitPowerIn(xen *xenapi.Client, obj *virtv1alpha1.XenVM, power virtv1alpha1.PowerState) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		got := getVM(g, obj)
		g.Expect(got.Status.UUID).NotTo(BeEmpty())
		g.Expect(got.Status.PowerState).To(Equal(power))
		g.Expect(got.Status.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
		vm, err := xen.VMByUUID(ctx, got.Status.UUID)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(vm.PowerState)).To(Equal(string(power)))
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
}

// vmsTagged counts the simulator's VMs tagged with a XenVM's UID or named
// with its install name.
func vmsTagged(g Gomega, obj *virtv1alpha1.XenVM) int {
	vms, err := xen.VMs(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	n := 0
	for _, vm := range vms {
		if vm.OtherConfig[vmservice.TagUID] == string(obj.UID) || vm.NameLabel == installName(obj.UID) {
			n++
		}
	}
	return n
}

func mustUID(obj *virtv1alpha1.XenVM) string { return fmt.Sprint(obj.UID) }

// ownerOf is the owner the operator tags a XenVM's VM with.
func ownerOf(obj *virtv1alpha1.XenVM) vmservice.Owner {
	return vmservice.Owner{UID: string(obj.UID), Namespace: obj.Namespace, Name: obj.Name}
}

// installName is the name a XenVM's VM has between its clone and its tag.
func installName(uid types.UID) string { return vmservice.Owner{UID: string(uid)}.InstallName() }

// installAdmissionPolicy installs the MutatingAdmissionPolicy of
// config/admission as the chart does, waits until the API server applies
// it, and removes it when the spec ends, waiting until the API server no
// longer applies it: the specs that follow create XenVMs without it.
func installAdmissionPolicy() {
	Expect(harness.InstallAdmissionPolicy(ctx, k8sClient, filepath.Join("..", "..", "config", "admission", "policy.yaml"))).To(Succeed())
	DeferCleanup(func() {
		_ = k8sClient.Delete(context.Background(), &admissionv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "xen-operator-admission"}})
		_ = k8sClient.Delete(context.Background(), &admissionv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "xen-operator-admission"}})
		Eventually(func(g Gomega) {
			probe := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "admission-probe"},
				Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "probe"}, Template: "probe"}}
			g.Expect(k8sClient.Create(context.Background(), probe, client.DryRunAll)).To(Succeed())
			g.Expect(probe.Finalizers).To(BeEmpty())
		}, time.Minute, 200*time.Millisecond).Should(Succeed())
	})
}
