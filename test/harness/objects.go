package harness

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
)

// NewClient is a client of the control plane at cfg that knows the
// Kubernetes types and the project's.
func NewClient(cfg *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := virtv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// SimulatorCredentials is a Secret with the simulator's credentials.
func SimulatorCredentials(namespace, name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		StringData: map[string]string{"username": "root", "password": "xenserver"}}
}

// SimulatorXenHost is a XenHost for a simulator at address (http://...),
// with its credentials in the Secret secretName.
//
// This is the one place the benchmark and the fault-injection suite build
// their XenHosts: an opt-in the API needs for plain-HTTP addresses goes
// here, once.
func SimulatorXenHost(namespace, name, address, secretName string) *virtv1alpha1.XenHost {
	return &virtv1alpha1.XenHost{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: virtv1alpha1.XenHostSpec{
			Address: address,
			// The simulator serves plain HTTP: an opt-in a real pool's
			// https:// address does not need.
			AllowInsecureHTTP:    strings.HasPrefix(address, "http://"),
			CredentialsSecretRef: virtv1alpha1.LocalSecretReference{Name: secretName},
		},
	}
}

// WaitForXenHostReady waits until the XenHost's Ready condition is true and
// returns its last Ready condition in the error otherwise.
func WaitForXenHostReady(ctx context.Context, c client.Client, key client.ObjectKey, timeout time.Duration) error {
	var last *metav1.Condition
	err := WaitFor(ctx, timeout, func() (bool, error) {
		h := &virtv1alpha1.XenHost{}
		if err := c.Get(ctx, key, h); err != nil {
			return false, err
		}
		last = meta.FindStatusCondition(h.Status.Conditions, virtv1alpha1.ConditionReady)
		return last != nil && last.Status == metav1.ConditionTrue, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("XenHost %s not Ready (%s: %s): %w", key, last.Reason, last.Message, err)
	}
	return err
}

// ManagerOptions configure a manager run by StartManager.
type ManagerOptions struct {
	// Bin is the manager binary, e.g. bin/manager.
	Bin string
	// Kubeconfig is the control plane's admin kubeconfig.
	Kubeconfig string
	// LogPath receives the manager's output.
	LogPath string
	// Reconciles and Operations are --max-concurrent-reconciles and
	// --xenapi-max-concurrent-operations; 0 keeps the manager's defaults.
	Reconciles, Operations int
	// Args are further flags.
	Args []string
	// Env is added to the manager's environment.
	Env []string
}

// StartManager runs the manager as its own process outside any cluster:
// leader election off, probes off, metrics over plain HTTP on a free
// loopback port, whose address it returns.
func StartManager(o ManagerOptions) (*Process, string, error) {
	metricsAddr, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	args := []string{"--leader-elect=false", "--metrics-bind-address=" + metricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address=0"}
	if o.Reconciles > 0 {
		args = append(args, fmt.Sprintf("--max-concurrent-reconciles=%d", o.Reconciles))
	}
	if o.Operations > 0 {
		args = append(args, fmt.Sprintf("--xenapi-max-concurrent-operations=%d", o.Operations))
	}
	p, err := Start("manager", o.Bin, append(args, o.Args...), append([]string{"KUBECONFIG=" + o.Kubeconfig}, o.Env...), o.LogPath)
	return p, metricsAddr, err
}

// InstallAdmissionPolicy creates the MutatingAdmissionPolicy and its
// binding in path (config/admission/policy.yaml), as the chart
// does, and waits until the API server applies it: a dry-run XenVM comes
// back labelled (the policy answers ServiceUnavailable until the API
// server's type converter knows the CRDs, refreshed every 5 s).
func InstallAdmissionPolicy(ctx context.Context, c client.Client, path string) error {
	raw, err := os.ReadFile(path) //nolint:gosec // a path of the repository
	if err != nil {
		return err
	}
	docs := strings.Split(string(raw), "\n---\n")
	if len(docs) != 2 {
		return fmt.Errorf("%s: want a policy and its binding, found %d documents", path, len(docs))
	}
	policy, binding := &admissionv1.MutatingAdmissionPolicy{}, &admissionv1.MutatingAdmissionPolicyBinding{}
	for i, o := range []client.Object{policy, binding} {
		if err := yaml.UnmarshalStrict([]byte(docs[i]), o); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := c.Create(ctx, o); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		probe := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "admission-probe"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "probe"}, Template: "probe"}}
		err := c.Create(ctx, probe, client.DryRunAll)
		if err == nil && probe.Labels["virt.xen-operator.io/xenhost"] == "probe" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the admission policy does not label XenVMs after a minute (last error: %v)", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
