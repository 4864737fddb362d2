package controller

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xapisim"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// apiRequest is one request a manager sent to the API server.
type apiRequest struct {
	method, path, query, accept string
	// body is a PATCH's body.
	body string
}

// requestLog records every request of a manager's client.
type requestLog struct {
	mu   sync.Mutex
	reqs []apiRequest
}

func (l *requestLog) all() []apiRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]apiRequest(nil), l.reqs...)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// recordingConfig is the suite's API server config acting as user (none:
// the admin) with every request recorded in log.
func recordingConfig(log *requestLog, user string) *rest.Config {
	c := rest.CopyConfig(cfg)
	if user != "" {
		c.Impersonate = rest.ImpersonationConfig{UserName: user}
	}
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			req := apiRequest{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, accept: r.Header.Get("Accept")}
			if r.Method == http.MethodPatch && r.GetBody != nil {
				if b, err := r.GetBody(); err == nil {
					raw, _ := io.ReadAll(b)
					req.body = string(raw)
				}
			}
			log.mu.Lock()
			log.reqs = append(log.reqs, req)
			log.mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
	return c
}

// grantNamespaced gives user the manager's ClusterRole (config/rbac/role.yaml)
// without its Secrets rule, and that rule in a Role of namespace ns only: the
// chart's RBAC when watchNamespaces is set.
func grantNamespaced(user, ns string) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	Expect(yaml.Unmarshal(raw, role)).To(Succeed())
	var cluster, secrets []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if len(r.Resources) == 1 && r.Resources[0] == "secrets" {
			secrets = append(secrets, r)
		} else {
			cluster = append(cluster, r)
		}
	}
	Expect(secrets).To(HaveLen(1), "config/rbac/role.yaml has one Secrets rule")
	name := "namespaced-" + ns
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	objs := []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: cluster},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: secrets},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}},
	}
	for _, o := range objs {
		Expect(k8sClient.Create(ctx, o)).To(Succeed())
		DeferCleanup(func() { _ = k8sClient.Delete(context.Background(), o) })
	}
}

// simClient is a client of a spec's own simulator, for assertions.
func simClient(s *xapisim.Server) *xenapi.Client {
	pool := xenapi.NewSessions(xenapi.Options{Originator: "controller-tests"})
	DeferCleanup(func() { pool.Close(context.Background()) })
	c, err := pool.Client("tests", xenapi.Endpoint{URL: s.URL(), Username: "root", Password: "xenserver"})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// managerLogins counts the logins of the operator (not of the specs'
// clients) a simulator saw.
func managerLogins(s *xapisim.Server) int64 {
	n := int64(0)
	for orig, c := range s.Stats().LoginsByOriginator {
		if strings.HasPrefix(orig, "xen-operator/") {
			n += c
		}
	}
	return n
}

var _ = Describe("Secrets", func() {
	It("with watched namespaces and namespaced Secret RBAC: reads only the Secrets its objects name, in its namespace, and none of another's", func() {
		own := startSim(xapisim.Config{})
		watched, foreign := newNamespace(), newNamespace()
		const user = "system:serviceaccount:xen-operator-system:namespaced"
		grantNamespaced(user, watched)

		By("a XenHost of the same name, its Secret and a cloudInit Secret in a namespace the manager does not watch")
		newHost(foreign, "ns-only", own.URL(), "xenserver")
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: foreign, Name: "late-init"},
			StringData: map[string]string{"user-data": userData}})).To(Succeed())
		By("an unrelated Secret in the watched namespace")
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "unrelated",
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"token":"c2VjcmV0"}}`}},
			StringData: map[string]string{"token": "secret"}})).To(Succeed())

		requests := &requestLog{}
		startShard("ns-only", managerOptions{config: recordingConfig(requests, user), namespaces: []string{watched}})

		host := newHost(watched, "ns-only", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)

		By("a XenVM whose cloudInit Secret is created after it: the Secret's creation wakes it")
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "late"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "ns-only"}, Template: "Debian Bookworm 12",
				PowerState: virtv1alpha1.PowerStateRunning,
				CloudInit:  &virtv1alpha1.CloudInit{UserDataSecretRef: &virtv1alpha1.DataSecretKeyReference{Name: "late-init", Key: "user-data"}}}}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionFalse, virtv1alpha1.ReasonDataSecretNotFound))
		}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "late-init"},
			StringData: map[string]string{"user-data": userData}})).To(Succeed())
		waitPowerIn(simClient(own), obj, virtv1alpha1.PowerStateRunning)

		By("rotating the credentials: the old session goes, a new one comes")
		before := own.Stats()
		own.SetPassword("rotated")
		setPassword(host, "rotated")
		Eventually(func() int64 { return own.Stats().LogoutsTotal }, 10*time.Second).Should(BeNumerically(">", before.LogoutsTotal))
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)

		By("the foreign XenHost was never touched")
		other := &virtv1alpha1.XenHost{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: foreign, Name: "ns-only"}, other)).To(Succeed())
		Expect(other.Finalizers).To(BeEmpty())
		Expect(other.Status.Conditions).To(BeEmpty())

		By("every Secret request: in the watched namespace, metadata-only for lists and watches, by name for the named ones")
		secretGets := map[string]int{}
		for _, r := range requests.all() {
			Expect(r.path).NotTo(ContainSubstring("/namespaces/"+foreign+"/"), "%s %s", r.method, r.path)
			if !strings.Contains(r.path, "/secrets") {
				continue
			}
			Expect(r.path).To(HavePrefix("/api/v1/namespaces/"+watched+"/secrets"), "%s %s", r.method, r.path)
			if name, named := strings.CutPrefix(r.path, "/api/v1/namespaces/"+watched+"/secrets/"); named {
				Expect(r.method).To(Equal(http.MethodGet))
				secretGets[name]++
				continue
			}
			Expect(r.accept).To(ContainSubstring("as=PartialObjectMetadata"), "a list or watch of Secrets with their data: %s?%s", r.path, r.query)
		}
		Expect(secretGets).To(HaveKey("ns-only-credentials"))
		Expect(secretGets).To(HaveKey("late-init"))
		Expect(secretGets).NotTo(HaveKey("unrelated"))
	})
})

var _ = Describe("Sharding by XenHost", func() {
	It("labels XenVMs with their XenHost; each shard caches and converges only its own, with one session to its own pool", func() {
		simA, simB := startSim(xapisim.Config{}), startSim(xapisim.Config{})
		ns := newNamespace()
		newHost(ns, "shard-a", simA.URL(), "xenserver")
		newHost(ns, "shard-b", simB.URL(), "xenserver")
		managers := map[string]*requestLog{}
		caches := map[string]client.Reader{}
		for _, name := range []string{"shard-a", "shard-b"} {
			managers[name] = &requestLog{}
			caches[name] = startShard(name, managerOptions{config: recordingConfig(managers[name], "")}).GetCache()
		}
		vmA := newVM(ns, "vm-a", "shard-a", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)
		vmB := newVM(ns, "vm-b", "shard-b", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)
		waitPowerIn(simClient(simA), vmA, virtv1alpha1.PowerStateRunning)
		waitPowerIn(simClient(simB), vmB, virtv1alpha1.PowerStateRunning)

		By("the labels name the XenHosts")
		Expect(getVM(Default, vmA).Labels).To(HaveKeyWithValue(LabelXenHost, "shard-a"))
		Expect(getVM(Default, vmB).Labels).To(HaveKeyWithValue(LabelXenHost, "shard-b"))
		host := &virtv1alpha1.XenHost{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shard-a"}, host)).To(Succeed())
		Expect(host.Labels).To(HaveKeyWithValue(LabelXenHost, "shard-a"))

		By("each cache holds its own XenHost and XenVM only, in every namespace")
		for name, c := range caches {
			vms := &virtv1alpha1.XenVMList{}
			Expect(c.List(ctx, vms)).To(Succeed())
			Expect(vms.Items).To(HaveLen(1))
			Expect(vms.Items[0].Spec.HostRef.Name).To(Equal(name))
			hosts := &virtv1alpha1.XenHostList{}
			Expect(c.List(ctx, hosts)).To(Succeed())
			Expect(hosts.Items).To(HaveLen(1))
			Expect(hosts.Items[0].Name).To(Equal(name))
		}
		By("the caches keep neither managed fields nor kubectl's last-applied-configuration")
		annotated := getVM(Default, vmA)
		patch := client.MergeFrom(annotated.DeepCopy())
		annotated.Annotations = map[string]string{"example.com/kept": "yes",
			lastApplied: `{"apiVersion":"virt.xen-operator.io/v1alpha1","kind":"XenVM"}`}
		Expect(k8sClient.Patch(ctx, annotated, patch)).To(Succeed())
		Expect(annotated.ManagedFields).NotTo(BeEmpty(), "the API server keeps them")
		Eventually(func(g Gomega) {
			cached := &virtv1alpha1.XenVM{}
			g.Expect(caches["shard-a"].Get(ctx, client.ObjectKeyFromObject(vmA), cached)).To(Succeed())
			g.Expect(cached.Annotations).To(Equal(map[string]string{"example.com/kept": "yes"}))
			g.Expect(cached.ManagedFields).To(BeEmpty())
		}, 10*time.Second, 100*time.Millisecond).Should(Succeed())

		By("the XenVM lists and watches are label-selected")
		for name, log := range managers {
			for _, r := range log.all() {
				if strings.HasSuffix(r.path, "/xenvms") && r.method == http.MethodGet {
					Expect(r.query).To(ContainSubstring("labelSelector="), "%s: %s?%s", name, r.path, r.query)
				}
			}
		}
		By("one manager's session per pool, none to the other's")
		Expect(managerLogins(simA)).To(BeEquivalentTo(1))
		Expect(managerLogins(simB)).To(BeEquivalentTo(1))

		By("a label changed by hand: the shard it names puts it back, and the XenVM's own shard takes it again")
		patch = client.MergeFrom(getVM(Default, vmA).DeepCopy())
		changed := getVM(Default, vmA)
		changed.Labels[LabelXenHost] = "shard-b"
		Expect(k8sClient.Patch(ctx, changed, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, vmA).Labels).To(HaveKeyWithValue(LabelXenHost, "shard-a"))
			vms := &virtv1alpha1.XenVMList{}
			g.Expect(caches["shard-a"].List(ctx, vms)).To(Succeed())
			g.Expect(vms.Items).To(HaveLen(1))
		}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
		waitPowerIn(simClient(simA), vmA, virtv1alpha1.PowerStateRunning)
		Expect(managerLogins(simB)).To(BeEquivalentTo(1))
	})

	It("rejects a selector on another label", func() {
		_, err := ParseShardSelector("shard=a")
		Expect(err).To(MatchError(ContainSubstring(LabelXenHost)))
		sel, err := ParseShardSelector("")
		Expect(err).NotTo(HaveOccurred())
		Expect(sel).To(BeNil())
	})

	It("is labelled and given its finalizer at admission by the MutatingAdmissionPolicy in config/admission; a changed label is put back, a removed finalizer only while not deleting", func() {
		installAdmissionPolicy()
		ns := newNamespace()
		var vm *virtv1alpha1.XenVM
		Eventually(func(g Gomega) {
			vm = &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "admitted-"},
				Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "admission-only"}, Template: "Debian Bookworm 12"}}
			g.Expect(k8sClient.Create(ctx, vm)).To(Succeed())
			g.Expect(vm.Labels).To(HaveKeyWithValue(LabelXenHost, "admission-only"))
			g.Expect(vm.Finalizers).To(ConsistOf(vmFinalizer))
		}, 10*time.Second, 200*time.Millisecond).Should(Succeed())
		host := &virtv1alpha1.XenHost{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "admission-only"},
			Spec: virtv1alpha1.XenHostSpec{Address: "https://xen.example", CredentialsSecretRef: virtv1alpha1.LocalSecretReference{Name: "none"}}}
		Expect(k8sClient.Create(ctx, host)).To(Succeed())
		Expect(host.Labels).To(HaveKeyWithValue(LabelXenHost, "admission-only"))
		Expect(host.Finalizers).To(ConsistOf(hostFinalizer))

		patch := client.MergeFrom(vm.DeepCopy())
		vm.Labels[LabelXenHost] = "elsewhere"
		vm.Finalizers = nil
		Expect(k8sClient.Patch(ctx, vm, patch)).To(Succeed())
		Expect(vm.Labels).To(HaveKeyWithValue(LabelXenHost, "admission-only"))
		Expect(vm.Finalizers).To(ConsistOf(vmFinalizer), "a finalizer removed from a live XenVM is put back")

		// Deleting: the finalizer holds the XenVM; its removal (what the
		// operator does once the VM is gone) is not undone, and it goes.
		Expect(k8sClient.Delete(ctx, vm)).To(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(vm), vm)).To(Succeed())
		Expect(vm.DeletionTimestamp).NotTo(BeNil())
		patch = client.MergeFrom(vm.DeepCopy())
		vm.Finalizers = nil
		Expect(k8sClient.Patch(ctx, vm, patch)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(vm), &virtv1alpha1.XenVM{}))
		}, 10*time.Second, 100*time.Millisecond).Should(BeTrue())
		Expect(k8sClient.Delete(ctx, host)).To(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(host), host)).To(Succeed())
		patch = client.MergeFrom(host.DeepCopy())
		host.Finalizers = nil
		Expect(k8sClient.Patch(ctx, host, patch)).To(Succeed())
	})
})
