// Package e2e runs the operator as a user does: the Helm chart installed on
// a local control plane, bin/manager outside the cluster with the chart's
// ServiceAccount identity, kubectl applying config/samples/, and a simulated
// XenServer pool (bin/xapi-simulator). Run by `make test`.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/test/controlplane"
	"github.com/xen-operator/xen-operator/test/harness"
)

var (
	root       string // the repository
	workDir    string // logs and kubeconfigs of this run
	cp         *controlplane.ControlPlane
	k8s        client.Client
	sim        *harness.Process
	simURLs    []string
	xen        *xenapi.Client
	xenPool    *xenapi.Sessions
	kubeconfig string // the admin's
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "End-to-end Suite")
}

var _ = BeforeSuite(func() {
	var err error
	root, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	for _, bin := range []string{"bin/manager", "bin/xapi-simulator", "bin/helm"} {
		Expect(filepath.Join(root, bin)).To(BeAnExistingFile(), "run the suite through 'make test', which builds %s", bin)
	}
	workDir = filepath.Join(root, "bin", "e2e")
	Expect(os.MkdirAll(workDir, 0o750)).To(Succeed())

	By("starting the local control plane, without CRDs: the chart installs them")
	kubeconfig = filepath.Join(workDir, "admin.kubeconfig")
	cp, err = controlplane.Start(controlplane.Options{KubeconfigPath: kubeconfig})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cp.Stop()).To(Succeed()) })
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(virtv1alpha1.AddToScheme(scheme)).To(Succeed())
	Expect(apiextensionsv1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(cp.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	By("starting the XenAPI simulator: a pool of two hosts")
	sim, simURLs, err = harness.StartSimulator(filepath.Join(root, "bin/xapi-simulator"), 2,
		[]string{"--boot-delay", "500ms", "--op-duration", "100ms", "--auth-failure-delay", "100ms"},
		filepath.Join(workDir, "xapi-simulator.log"))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(sim.Stop(10 * 1e9)).To(Succeed()) })

	xenPool = xenapi.NewSessions(xenapi.Options{Originator: "e2e-tests"})
	DeferCleanup(func() { xenPool.Close(context.Background()) })
	xen, err = xenPool.Client("e2e", xenapi.Endpoint{URL: simURLs[0], Username: "root", Password: "xenserver"})
	Expect(err).NotTo(HaveOccurred())
})

// run runs a command from the repository root with the admin kubeconfig.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out, err := cmd.CombinedOutput()
	_, _ = fmt.Fprintf(GinkgoWriter, "$ %s %s\n%s", name, strings.Join(args, " "), out)
	return string(out), err
}

func mustRun(name string, args ...string) string {
	GinkgoHelper()
	out, err := run(name, args...)
	Expect(err).NotTo(HaveOccurred(), out)
	return out
}
