// Command controlplane runs a local Kubernetes control plane for the demo, the
// end-to-end tests and the benchmark: etcd and kube-apiserver on loopback (from
// KUBEBUILDER_ASSETS), the CRDs from config/crd/bases installed, and an admin
// kubeconfig written to --kubeconfig. It prints "control plane ready" once
// kubectl can use it and stops everything it started on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/xen-operator/xen-operator/test/controlplane"
)

func main() {
	// An own flag set: controller-runtime registers a global --kubeconfig flag
	// that means "read from", not "write to".
	var opts controlplane.Options
	flags := flag.NewFlagSet("controlplane", flag.ExitOnError)
	flags.StringVar(&opts.CRDDirectory, "crds", "config/crd/bases", "Folder of CRD manifests to install.")
	flags.StringVar(&opts.KubeconfigPath, "kubeconfig", "bin/controlplane/kubeconfig", "Where to write the admin kubeconfig.")
	_ = flags.Parse(os.Args[1:])

	// Catch the signals before starting anything, so that a Ctrl-C during
	// start-up still stops what was started.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)

	cp, err := controlplane.Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
	fmt.Printf("control plane ready: API server %s\n", cp.Config.Host)
	fmt.Printf("  export KUBECONFIG=%s\n", cp.KubeconfigPath())
	fmt.Println("  Ctrl-C stops it")

	sig := <-signals
	fmt.Printf("controlplane: %s received, stopping\n", sig)
	if err := cp.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane: stopping:", err)
		os.Exit(1)
	}
	fmt.Println("controlplane: stopped")
}
