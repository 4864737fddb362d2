package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/test/harness"
)

const (
	release   = "xen-operator"
	namespace = "xen-operator-system"
)

var _ = Describe("The operator as a cluster admin installs it", Ordered, func() {
	var manager *harness.Process

	AfterEach(func() {
		if !CurrentSpecReport().Failed() {
			return
		}
		if manager != nil {
			_, _ = fmt.Fprintf(GinkgoWriter, "\n--- manager log (%s) ---\n%s", manager.LogPath, harness.Tail(manager.LogPath, 80))
		}
		out, _ := run("kubectl", "get", "events", "-A", "--sort-by=.lastTimestamp")
		_, _ = fmt.Fprintf(GinkgoWriter, "\n--- events ---\n%s", out)
		out, _ = run("kubectl", "get", "xenhosts,xenvms", "-A", "-o", "yaml")
		_, _ = fmt.Fprintf(GinkgoWriter, "\n--- objects ---\n%s", out)
	})
	AfterAll(func() {
		if manager != nil {
			_ = manager.Stop(15 * time.Second)
		}
	})

	It("installs the chart: CRDs, RBAC as config/rbac, a restricted Deployment, the metrics Service", func() {
		mustRun("bin/helm", "install", release, "charts/xen-operator", "--namespace", namespace, "--create-namespace",
			"--set", "crds.keep=false", "--set", "image.tag=e2e")
		for _, name := range []string{"xenvms.virt.xen-operator.io", "xenhosts.virt.xen-operator.io"} {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: name}, crd)).To(Succeed())
				g.Expect(crd.Status.Conditions).To(ContainElement(And(
					HaveField("Type", apiextensionsv1.Established), HaveField("Status", apiextensionsv1.ConditionTrue))))
			}, 30*time.Second).Should(Succeed())
		}

		deploy := &appsv1.Deployment{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: release}, deploy)).To(Succeed())
		pod := deploy.Spec.Template.Spec
		Expect(pod.ServiceAccountName).To(Equal(release))
		Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
		c := pod.Containers[0]
		Expect(c.Image).To(Equal("ghcr.io/xen-operator/xen-operator:e2e"))
		Expect(c.Args).To(ContainElements("--leader-elect", "--metrics-bind-address=:8443"))
		Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
		Expect(c.SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
		Expect(c.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(c.LivenessProbe).NotTo(BeNil())
		Expect(c.ReadinessProbe).NotTo(BeNil())
		Expect(c.Resources.Requests).NotTo(BeEmpty())

		svc := &corev1.Service{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: release + "-metrics"}, svc)).To(Succeed())
		Expect(svc.Spec.Ports[0].Port).To(Equal(int32(8443)))

		By("the chart's ClusterRoles (the manager's, and the Secrets' without watchNamespaces) grant exactly what config/rbac/role.yaml grants")
		var rules []rbacv1.PolicyRule
		for _, name := range []string{release + "-manager", release + "-secrets"} {
			role := &rbacv1.ClusterRole{}
			Expect(k8s.Get(ctx(), client.ObjectKey{Name: name}, role)).To(Succeed())
			rules = append(rules, role.Rules...)
		}
		raw, err := os.ReadFile(filepath.Join(root, "config/rbac/role.yaml"))
		Expect(err).NotTo(HaveOccurred())
		want := &rbacv1.ClusterRole{}
		Expect(yaml.Unmarshal(raw, want)).To(Succeed())
		Expect(rules).To(ConsistOf(want.Rules))
	})

	It("runs the manager with the chart's ServiceAccount identity", func() {
		cs, err := kubernetes.NewForConfig(cp.Config)
		Expect(err).NotTo(HaveOccurred())
		tok, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx(), release,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}},
			metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		saKubeconfig := filepath.Join(workDir, "manager.kubeconfig")
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: cp.Config.Host, CertificateAuthorityData: cp.Config.CAData}
		cfg.AuthInfos["manager"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
		cfg.Contexts["manager"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "manager"}
		cfg.CurrentContext = "manager"
		Expect(clientcmd.WriteToFile(*cfg, saKubeconfig)).To(Succeed())

		manager, err = harness.Start("manager", filepath.Join(root, "bin/manager"),
			[]string{"--leader-elect", "--leader-election-namespace=" + namespace,
				"--metrics-bind-address=0", "--health-probe-bind-address=0"},
			[]string{"KUBECONFIG=" + saKubeconfig}, filepath.Join(workDir, "manager.log"))
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() string { return harness.Tail(manager.LogPath, 200) }, 30*time.Second).
			Should(ContainSubstring("Successfully acquired lease"))
		Consistently(func() bool { exited, _ := manager.Exited(); return exited }, 2*time.Second).Should(BeFalse())
		Expect(harness.Tail(manager.LogPath, 500)).NotTo(ContainSubstring("forbidden"), "the chart's RBAC is enough")
	})

	It("drives config/samples/ applied with kubectl to their power states", func() {
		// The chart's MutatingAdmissionPolicy answers ServiceUnavailable
		// until the API server's policy type converter (refreshed every 5 s)
		// knows the new CRDs' schemas: as a user would, apply again.
		Eventually(func() error {
			_, err := run("kubectl", "apply", "-f", "config/samples/")
			return err
		}, 30*time.Second, time.Second).Should(Succeed())
		// The samples name the demo's simulator address; this run's has its own port.
		mustRun("kubectl", "patch", "xenhost", "demo-pool", "--type", "merge",
			"-p", fmt.Sprintf(`{"spec":{"address":%q}}`, simURLs[0]))
		Eventually(func(g Gomega) {
			vms := &virtv1alpha1.XenVMList{}
			g.Expect(k8s.List(ctx(), vms, client.InNamespace("default"))).To(Succeed())
			g.Expect(vms.Items).To(HaveLen(6))
			for _, vm := range vms.Items {
				ready := meta.FindStatusCondition(vm.Status.Conditions, virtv1alpha1.ConditionReady)
				g.Expect(ready).NotTo(BeNil(), vm.Name)
				g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "%s: %s", vm.Name, ready.Message)
				inSim, err := xen.VMByUUID(ctx(), vm.Status.UUID)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(string(inSim.PowerState)).To(Equal(string(vm.Spec.PowerState)), vm.Name)
			}
		}, 90*time.Second, time.Second).Should(Succeed())
		Expect(mustRun("kubectl", "get", "xenhosts,xenvms", "-o", "wide")).To(ContainSubstring("xcp-ng-01"))
		By("the snapshot sample is taken once, of web-1's VM")
		Eventually(func(g Gomega) {
			snap := &virtv1alpha1.XenVMSnapshot{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "default", Name: "web-1-before-upgrade"}, snap)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(snap.Status.Conditions, virtv1alpha1.ConditionReady)).To(BeTrue())
			inSim, err := xen.VMByUUID(ctx(), snap.Status.UUID)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(inSim.IsSnapshot).To(BeTrue())
			vm, err := xen.VMByUUID(ctx(), vmUUID("web-1"))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(vm.Snapshots).To(ConsistOf(inSim.Ref))
		}, 60*time.Second, time.Second).Should(Succeed())
		Expect(mustRun("kubectl", "get", "xvmsnap")).To(ContainSubstring("web-1-before-upgrade"))
	})

	It("follows kubectl patch of a power state", func() {
		mustRun("kubectl", "patch", "xenvm", "web-1", "--type", "merge", "-p", `{"spec":{"powerState":"Suspended"}}`)
		uuid := vmUUID("web-1")
		Eventually(func(g Gomega) {
			vm, err := xen.VMByUUID(ctx(), uuid)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(vm.PowerState).To(Equal(xenapi.PowerStateSuspended))
		}, 30*time.Second).Should(Succeed())
	})

	It("drives back a VM halted directly through XenAPI", func() {
		vm, err := xen.VMByUUID(ctx(), vmUUID("win-1"))
		Expect(err).NotTo(HaveOccurred())
		Expect(xen.HardShutdownVM(ctx(), vm.Ref)).To(Succeed())
		Eventually(func(g Gomega) {
			v, err := xen.VM(ctx(), vm.Ref)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(v.PowerState).To(Equal(xenapi.PowerStateRunning))
		}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
	})

	It("adopts a VM created directly through XenAPI, applied with kubectl", func() {
		tmpls, err := xen.VMsByName(ctx(), "Rocky Linux 9")
		Expect(err).NotTo(HaveOccurred())
		ref, err := xen.CloneVM(ctx(), tmpls[0].Ref, "made-by-hand")
		Expect(err).NotTo(HaveOccurred())
		pool, err := xen.PoolRecord(ctx())
		Expect(err).NotTo(HaveOccurred())
		sr, err := xen.SR(ctx(), pool.DefaultSR)
		Expect(err).NotTo(HaveOccurred())
		vm, err := xen.VM(ctx(), ref)
		Expect(err).NotTo(HaveOccurred())
		vm.OtherConfig["disks"] = strings.ReplaceAll(vm.OtherConfig["disks"], `sr=""`, `sr="`+sr.UUID+`"`)
		Expect(xen.SetVMOtherConfig(ctx(), ref, vm.OtherConfig)).To(Succeed())
		Expect(xen.ProvisionVM(ctx(), ref)).To(Succeed())
		adoptedUUID = vm.UUID
		manifest := fmt.Sprintf(`apiVersion: virt.xen-operator.io/v1alpha1
kind: XenVM
metadata: {name: adopted, namespace: default}
spec:
  hostRef: {name: demo-pool}
  vm: {uuid: %s}
  powerState: Halted
`, vm.UUID)
		path := filepath.Join(workDir, "adopted.yaml")
		Expect(os.WriteFile(path, []byte(manifest), 0o600)).To(Succeed())
		mustRun("kubectl", "apply", "-f", path)
		Eventually(func(g Gomega) {
			got := &virtv1alpha1.XenVM{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "default", Name: "adopted"}, got)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, virtv1alpha1.ConditionReady)).To(BeTrue())
			v, err := xen.VM(ctx(), ref)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(v.OtherConfig).To(HaveKeyWithValue("xen-operator.io/uid", string(got.UID)))
			g.Expect(v.NameLabel).To(Equal("made-by-hand"))
		}, 30*time.Second).Should(Succeed())
	})

	It("deletes the XenVMs: Delete destroys the VMs, Retain (and adoption) leaves its VM untagged", func() {
		retained := []string{vmUUID("build-agent"), adoptedUUID} // Retain, and an adopted VM's default
		mustRun("kubectl", "delete", "xenvms", "--all", "--wait=true", "--timeout=90s")
		vms, err := xen.VMs(ctx())
		Expect(err).NotTo(HaveOccurred())
		var left []string
		for _, vm := range vms {
			if !vm.IsTemplate && !vm.IsControlDomain {
				left = append(left, vm.UUID)
				Expect(vm.OtherConfig).NotTo(HaveKey("xen-operator.io/uid"))
			}
		}
		Expect(left).To(ConsistOf(retained))
		// web-1's data disk says deletionPolicy Retain: it stays on its SR,
		// no longer the operator's.
		kept, err := xen.VDIsByName(ctx(), "web-1 data")
		Expect(err).NotTo(HaveOccurred())
		Expect(kept).To(HaveLen(1), "the retained disk")
		Expect(kept[0].OtherConfig).NotTo(HaveKey("xen-operator.io/uid"))
		Expect(kept[0].VBDs).To(BeEmpty())
		mustRun("kubectl", "delete", "-f", "config/samples/", "--ignore-not-found", "--wait=true", "--timeout=60s")
	})

	It("leaves nothing behind on helm uninstall", func() {
		Expect(manager.Stop(15 * time.Second)).To(Succeed())
		manager = nil
		mustRun("bin/helm", "uninstall", release, "--namespace", namespace, "--wait")
		out := mustRun("kubectl", "get", "all,serviceaccounts,roles,rolebindings", "-n", namespace, "-l", "app.kubernetes.io/instance="+release, "-o", "name")
		Expect(strings.TrimSpace(out)).To(BeEmpty())
		out = mustRun("kubectl", "get", "clusterroles,clusterrolebindings,crds", "-o", "name")
		Expect(out).NotTo(ContainSubstring(release))
		Expect(out).NotTo(ContainSubstring("virt.xen-operator.io"))
	})

	// After the Helm release is gone: the CRDs are cluster-wide, so the two
	// installations cannot overlap.
	It("applies config/default with kustomize, and removes it again", func() {
		manifests := mustRun("bin/kustomize", "build", "config/default")
		path := filepath.Join(workDir, "kustomize.yaml")
		Expect(os.WriteFile(path, []byte(manifests), 0o600)).To(Succeed())
		// A server-side dry run creates nothing, so the namespace must exist.
		if _, err := run("kubectl", "get", "namespace", "xen-operator-system"); err != nil {
			mustRun("kubectl", "create", "namespace", "xen-operator-system")
		}
		mustRun("kubectl", "apply", "--server-side", "--dry-run=server", "-f", path)
		mustRun("kubectl", "apply", "--server-side", "-f", path)
		deploy := &appsv1.Deployment{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "xen-operator-system", Name: "xen-operator-controller-manager"}, deploy)).To(Succeed())
		// envtest runs no namespace controller: do not wait for the namespace.
		mustRun("kubectl", "delete", "-f", path, "--wait=false")
	})
})

func ctx() context.Context { return context.Background() }

// adoptedUUID is the VM the suite made by hand and adopted.
var adoptedUUID string

func vmUUID(name string) string {
	GinkgoHelper()
	vm := &virtv1alpha1.XenVM{}
	Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "default", Name: name}, vm)).To(Succeed())
	Expect(vm.Status.UUID).NotTo(BeEmpty())
	return vm.Status.UUID
}

func ptr[T any](v T) *T { return &v }
