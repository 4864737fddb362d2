// Package controlplane runs a local Kubernetes control plane (etcd and
// kube-apiserver from KUBEBUILDER_ASSETS) with the project's CRDs installed and
// an admin kubeconfig on disk. The demo, the end-to-end suites and the
// benchmark share it through hack/controlplane.
package controlplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options configures a control plane.
type Options struct {
	// CRDDirectory holds the CRD manifests to install (config/crd/bases);
	// empty installs none.
	CRDDirectory string
	// KubeconfigPath is where the admin kubeconfig is written.
	KubeconfigPath string
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	env            *envtest.Environment
	kubeconfigPath string
	// Config is the admin REST config.
	Config *rest.Config
}

// Start starts etcd and kube-apiserver on loopback, installs the CRDs and
// writes an admin kubeconfig. The binaries come from KUBEBUILDER_ASSETS.
func Start(opts Options) (*ControlPlane, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run 'make envtest' or 'make controlplane'")
	}
	if opts.KubeconfigPath == "" {
		return nil, errors.New("a kubeconfig path is required")
	}
	env := &envtest.Environment{}
	if opts.CRDDirectory != "" {
		env.CRDDirectoryPaths = []string{opts.CRDDirectory}
		env.ErrorIfCRDPathMissing = true
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	cp := &ControlPlane{env: env, kubeconfigPath: opts.KubeconfigPath, Config: cfg}

	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("creating the admin user: %w", err), cp.Stop())
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("rendering the admin kubeconfig: %w", err), cp.Stop())
	}
	if err := os.MkdirAll(filepath.Dir(opts.KubeconfigPath), 0o750); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	if err := os.WriteFile(opts.KubeconfigPath, kubeconfig, 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("writing the kubeconfig: %w", err), cp.Stop())
	}
	return cp, nil
}

// KubeconfigPath is where the admin kubeconfig was written.
func (c *ControlPlane) KubeconfigPath() string { return c.kubeconfigPath }

// Stop stops kube-apiserver and etcd, removes their data directories and the
// kubeconfig.
func (c *ControlPlane) Stop() error {
	err := c.env.Stop()
	if rmErr := os.Remove(c.kubeconfigPath); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
		err = errors.Join(err, rmErr)
	}
	return err
}
