package controller

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xapisim"
)

// writeKey is a request's verb and resource ("PATCH xenvms/status"), for
// the requests that name one object or create one; "" for lists and
// watches.
func writeKey(r apiRequest) string {
	parts := strings.Split(strings.Trim(r.path, "/"), "/")
	i := slices.Index(parts, "namespaces")
	if i < 0 || i+2 >= len(parts) {
		return ""
	}
	rest := parts[i+2:] // resource[/name[/subresource]]
	switch {
	case len(rest) == 1 && r.method == http.MethodPost:
		return r.method + " " + rest[0]
	case len(rest) == 2:
		return r.method + " " + rest[0]
	case len(rest) == 3:
		return r.method + " " + rest[0] + "/" + rest[2]
	}
	return ""
}

// The regression guard of the API requests a XenVM costs, from its apply to
// Running with an address (issue 16: at most 6). The manager's own requests
// are recorded, by verb and resource, with the chart's admission policy in
// place (it labels the XenVMs and puts their finalizer on). The XenVMs fit
// in the pool's operation slots: one that waits in line for room also has
// its status written while it waits (Provisioning), one request more.
var _ = Describe("API requests per XenVM", func() {
	It("installs XenVMs to Running with at most 6 requests each: status written once per real change", func() {
		const n = 8
		installAdmissionPolicy()
		own := startSim(xapisim.Config{OpDuration: 30 * time.Millisecond, BootDelay: 50 * time.Millisecond})
		ns := newNamespace()
		requests := &requestLog{}
		startShard("requests", managerOptions{config: recordingConfig(requests, "")})
		host := newHost(ns, "requests", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		Eventually(func(g Gomega) { g.Expect(getHost(g, host).Status.MemoryTotalBytes).NotTo(BeZero()) }).Should(Succeed())
		time.Sleep(time.Second) // the XenHost's first reconciles are over
		start := len(requests.all())

		By(fmt.Sprintf("%d XenVMs with an interface and a root disk, labelled at admission", n))
		vms := make([]*virtv1alpha1.XenVM, n)
		for i := range vms {
			vms[i] = &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("vm-%d", i)},
				Spec: vmSpec("requests", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
			vms[i].Spec.NetworkInterfaces = []virtv1alpha1.NetworkInterface{nic("eth0", netManagement)}
			vms[i].Spec.Disks = []virtv1alpha1.Disk{{Name: virtv1alpha1.RootDiskName, Size: "12Gi"}}
			Expect(k8sClient.Create(ctx, vms[i])).To(Succeed())
			Expect(vms[i].Finalizers).To(ConsistOf(vmFinalizer), "put on at admission")
		}
		Eventually(func(g Gomega) {
			for _, obj := range vms {
				st := getVM(g, obj).Status
				g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
				g.Expect(meta.IsStatusConditionTrue(st.Conditions, virtv1alpha1.ConditionReady)).To(BeTrue())
				g.Expect(st.IPAddresses).NotTo(BeEmpty())
			}
		}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
		time.Sleep(2 * time.Second) // what follows Running (the guest's report) is counted too

		counts, total, perVM := map[string]int{}, 0, map[string]int{}
		for _, r := range requests.all()[start:] {
			if k := writeKey(r); k != "" {
				counts[k]++
				total++
			}
			if writeKey(r) == "PATCH xenvms/status" {
				parts := strings.Split(r.path, "/") // .../xenvms/<name>/status
				perVM[parts[len(parts)-2]]++
				Expect(r.body).NotTo(Or(BeEmpty(), Equal(`{"status":{}}`)), "a status write that changes nothing")
			}
		}
		for _, k := range slices.Sorted(maps.Keys(counts)) {
			GinkgoWriter.Printf("%s: %.2f per XenVM\n", k, float64(counts[k])/n)
		}
		for _, r := range requests.all()[start:] {
			if writeKey(r) == "PATCH xenvms/status" {
				GinkgoWriter.Printf("%s %s\n", r.path, r.body) // what each write changed, for a failure
			}
		}
		By("per XenVM: its status when the start begins, when it is Running, when the guest reports its address, " +
			"and when the start's task ends if xapi's event for it comes after the VM's; two events; no finalizer or label PATCH")
		for name, c := range perVM {
			Expect(c).To(BeNumerically("<=", 4), "status writes of %s", name)
		}
		limits := map[string]int{
			"PATCH xenvms/status": 4 * n,
			"POST events":         2 * n, // Provisioned, PowerStateChanged
			// residentVMs alone is refreshed at most every 10s, not at each start;
			// the credentials are not read again.
			"PATCH xenhosts/status": 1,
		}
		for k, c := range counts {
			Expect(limits).To(HaveKey(k), "%d requests %s: %v", c, k, counts)
			Expect(c).To(BeNumerically("<=", limits[k]), "%s: %v", k, counts)
		}
		Expect(total).To(BeNumerically("<=", 6*n), "%v", counts)

		By("the XenHost's residentVMs follows within its refresh period")
		Eventually(func(g Gomega) { g.Expect(getHost(g, host).Status.ResidentVMs).To(BeEquivalentTo(n)) },
			volatileStatusPeriod+5*time.Second, 200*time.Millisecond).Should(Succeed())
	})
})
