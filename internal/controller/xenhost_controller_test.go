package controller

import (
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xapisim"
)

func getHost(g Gomega, h *virtv1alpha1.XenHost) *virtv1alpha1.XenHost {
	out := &virtv1alpha1.XenHost{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(h), out)).To(Succeed())
	return out
}

func expectHostCondition(h *virtv1alpha1.XenHost, typ string, status metav1.ConditionStatus, reason string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(getHost(g, h).Status.Conditions).To(haveCondition(typ, status, reason))
	}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
}

var _ = Describe("XenHost controller", func() {
	It("reports the host's facts through the shared session", func() {
		ns := newNamespace()
		host := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		expectHostCondition(host, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		st := getHost(Default, host).Status
		Expect(st.Hostname).To(Equal("xcp-ng-01"))
		Expect(st.Address).To(Equal("127.0.0.1"))
		Expect(st.ProductVersion).To(Equal("8.4.0"))
		Expect(st.APIVersion).To(Equal("2.21"))
		Expect(st.SoftwareVersion).To(HaveKeyWithValue("xapi", "24.11"))
		Expect(st.PoolName).To(Equal("xapi-simulator pool"))
		Expect(st.Coordinator).To(Equal(sim.URL()))
		Expect(st.Enabled).To(HaveValue(BeTrue()))
		Expect(st.MemoryTotalBytes).To(BeNumerically(">", 0))
		Expect(st.CPUCount).To(Equal(int32(16)))
		Expect(st.ObservedGeneration).To(Equal(getHost(Default, host).Generation))
	})

	It("follows a pool member to the coordinator and reports the member", func() {
		ns := newNamespace()
		host := newHost(ns, "member", sim.URLs()[1], "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		st := getHost(Default, host).Status
		Expect(st.Hostname).To(Equal("xcp-ng-02"))
		Expect(st.Coordinator).To(Equal(sim.URL()))
	})

	It("reports a missing Secret, then connects once it exists", func() {
		ns := newNamespace()
		host := &virtv1alpha1.XenHost{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-secret"},
			Spec: virtv1alpha1.XenHostSpec{Address: sim.URL(), AllowInsecureHTTP: true,
				CredentialsSecretRef: virtv1alpha1.LocalSecretReference{Name: "later"}},
		}
		Expect(k8sClient.Create(ctx, host)).To(Succeed())
		expectHostCondition(host, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionFalse, virtv1alpha1.ReasonSecretNotFound)
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonSecretNotFound)

		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"},
			StringData: map[string]string{"username": "root"}})).To(Succeed())
		expectHostCondition(host, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionFalse, virtv1alpha1.ReasonInvalidSecret)

		secret := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "later"}, secret)).To(Succeed())
		secret.StringData = map[string]string{"password": "xenserver"}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
	})

	It("reports wrong credentials without hammering xapi, and rotating the Secret logs the old session out", func() {
		own := startSim(xapisim.Config{})
		ns := newNamespace()
		host := newHost(ns, "rotated", own.URL(), "wrong")
		expectHostCondition(host, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionFalse, virtv1alpha1.ReasonAuthenticationFailed)
		Expect(getHost(Default, host).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonAuthenticationFailed))
		time.Sleep(2 * time.Second)
		// Backoff from 500ms, doubling: a handful of attempts in ~2s, not hundreds.
		Expect(own.Stats().LoginsFailed).To(BeNumerically("<=", 4))

		setPassword(host, "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		Expect(own.Stats().SessionsActive).To(Equal(1))

		By("rotating the password: the old session goes, a new one comes")
		before := own.Stats()
		own.SetPassword("rotated")
		setPassword(host, "rotated")
		Eventually(func() int64 { return own.Stats().LoginsTotal }, 10*time.Second).Should(Equal(before.LoginsTotal + 1))
		Eventually(func() int64 { return own.Stats().LogoutsTotal }, 10*time.Second).Should(Equal(before.LogoutsTotal + 1))
		Expect(own.Stats().SessionsActive).To(Equal(1))
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
	})

	It("writes the status a reconcile finds even when its cache has not shown the last write yet", func() {
		// The informer lags behind the reconciler's own writes under load,
		// and a status write wakes no XenHost: here it holds the XenHost as
		// it was once Ready, reads and events alike. The rotation's first
		// reconcile writes Connecting; the next, with the session healthy
		// again, finds Ready in its stale copy and must still write it.
		own := startSim(xapisim.Config{})
		ns := newNamespace()
		view := &laggingHosts{}
		startShard("stale-view", managerOptions{hostTransform: view.transform})
		host := newHost(ns, "stale-view", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		ready := getHost(Default, host)
		view.freeze(ready)
		readySince := meta.FindStatusCondition(ready.Status.Conditions, virtv1alpha1.ConditionReady).LastTransitionTime
		time.Sleep(time.Second) // transition times are in seconds: the next one is later

		before := own.Stats()
		own.SetPassword("rotated")
		setPassword(host, "rotated")
		Eventually(func() int64 { return own.Stats().LoginsTotal }, 10*time.Second).Should(Equal(before.LoginsTotal + 1))
		// Connecting went out (the new session's stream had not answered
		// yet), then Ready again: without the last write remembered, the
		// stale copy's Ready made that second write look like no change
		// and Connecting stayed.
		Eventually(func(g Gomega) {
			c := meta.FindStatusCondition(getHost(g, host).Status.Conditions, virtv1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(virtv1alpha1.ReasonConnected))
			g.Expect(c.LastTransitionTime.After(readySince.Time)).To(BeTrue(), "Ready since %s", c.LastTransitionTime)
		}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
	})

	It("tells an unreachable endpoint and a bad certificate apart", func() {
		ns := newNamespace()
		unreachable := newHost(ns, "unreachable", "http://127.0.0.1:1", "xenserver")
		expectHostCondition(unreachable, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionFalse, virtv1alpha1.ReasonUnreachable)

		tlsSim := startSim(xapisim.Config{TLS: true, CAFile: GinkgoT().TempDir() + "/ca.pem"})
		badCert := newHost(ns, "bad-cert", tlsSim.URL(), "xenserver")
		expectHostCondition(badCert, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionFalse, virtv1alpha1.ReasonTLSError)

		By("an https:// address whose endpoint speaks plain HTTP is a TLS problem, not an unreachable host")
		plain := newHost(ns, "plain", strings.Replace(sim.URL(), "http://", "https://", 1), "xenserver")
		expectHostCondition(plain, virtv1alpha1.ConditionSessionHealthy, metav1.ConditionFalse, virtv1alpha1.ReasonTLSError)
	})

	It("applies maintenance: disables and evacuates the host, then enables it", func() {
		own := startSim(xapisim.Config{Hosts: 2})
		ns := newNamespace()
		host := newHost(ns, "maint", own.URLs()[1], "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		vm := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guest"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "maint"},
				Template: "Debian Bookworm 12", AffinityHost: "xcp-ng-02"},
		}
		Expect(k8sClient.Create(ctx, vm)).To(Succeed())
		Eventually(func(g Gomega) {
			st := getVM(g, vm).Status
			g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
			g.Expect(st.ResidentOn).To(Equal("xcp-ng-02"))
		}, 30*time.Second).Should(Succeed())
		// A change of residentVMs alone goes out within volatileStatusPeriod (10s).
		Eventually(func(g Gomega) { g.Expect(getHost(g, host).Status.ResidentVMs).To(Equal(int32(1))) },
			volatileStatusPeriod+10*time.Second).Should(Succeed())

		h := getHost(Default, host)
		h.Spec.Maintenance = true
		Expect(k8sClient.Update(ctx, h)).To(Succeed())
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonMaintenance)
		Eventually(func(g Gomega) {
			st := getHost(g, host).Status
			g.Expect(st.Enabled).To(HaveValue(BeFalse()))
			g.Expect(st.ResidentVMs).To(BeZero())
		}, volatileStatusPeriod+10*time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			st := getVM(g, vm).Status
			g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning), "evacuated, not stopped")
			g.Expect(st.ResidentOn).To(Equal("xcp-ng-01"))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionPlacementSynced, metav1.ConditionFalse, virtv1alpha1.ReasonMigrationRefused),
				"its affinity host is disabled: xapi refuses the way back")
		}, 20*time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			e := getHost(g, host).Status.Evacuation
			g.Expect(e).NotTo(BeNil())
			g.Expect(e.CompletionTime).NotTo(BeNil())
			g.Expect(e.VMsAtStart).To(Equal(int32(1)))
			g.Expect(e.MovedVMs).To(Equal(int32(1)))
		}, 20*time.Second).Should(Succeed())

		h = getHost(Default, host)
		h.Spec.Maintenance = false
		Expect(k8sClient.Update(ctx, h)).To(Succeed())
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		Expect(getHost(Default, host).Status.Enabled).To(HaveValue(BeTrue()))
		By("the VM goes back to its affinity host once it is enabled again")
		Eventually(func(g Gomega) {
			st := getVM(g, vm).Status
			g.Expect(st.ResidentOn).To(Equal("xcp-ng-02"))
			g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
		}, 30*time.Second).Should(Succeed())
	})
})

// laggingHosts is a XenHost informer's transform that, once frozen, stores
// one XenHost as it was then whatever the API server sends: an informer
// that lags behind, for the reconciler's reads and the watch handlers
// alike.
type laggingHosts struct {
	mu     sync.Mutex
	frozen *virtv1alpha1.XenHost
}

func (l *laggingHosts) freeze(h *virtv1alpha1.XenHost) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.frozen = h.DeepCopy()
}

func (l *laggingHosts) transform(in any) (any, error) {
	l.mu.Lock()
	f := l.frozen
	l.mu.Unlock()
	if h, ok := in.(*virtv1alpha1.XenHost); ok && f != nil && client.ObjectKeyFromObject(h) == client.ObjectKeyFromObject(f) {
		return f.DeepCopy(), nil
	}
	return stripUnread(in)
}
