// Command demo runs the operator end to end on one machine: a local control
// plane, the XenAPI simulator (a pool of two hosts), the manager, and the
// samples of config/samples/ reaching their power states. It prints a short
// guide and runs until Ctrl-C, or exits at once with DEMO_EXIT=1. Run it with
// `make demo`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/test/controlplane"
	"github.com/xen-operator/xen-operator/test/harness"
)

const (
	demoDir       = "bin/demo"
	simulatorPort = "8180"
	waitTimeout   = 5 * time.Minute
)

func main() {
	code := run()
	os.Exit(code)
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run() int {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	exitAfter := os.Getenv("DEMO_EXIT") == "1"
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "demo failed: "+format+"\n", args...)
		fmt.Fprintf(os.Stderr, "logs: %s/\n", demoDir)
		return 1
	}

	kubeconfig, _ := filepath.Abs(filepath.Join(demoDir, "kubeconfig"))
	step("Starting the local control plane (etcd and kube-apiserver, CRDs installed)")
	cp, err := controlplane.Start(controlplane.Options{CRDDirectory: "config/crd/bases", KubeconfigPath: kubeconfig})
	if err != nil {
		return fail("%v", err)
	}
	stops = append(stops, func() {
		step("Stopping the control plane")
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	})

	step("Starting the XenAPI simulator: a pool of two hosts on port %s", simulatorPort)
	sim, urls, err := harness.StartSimulator("bin/xapi-simulator", 2,
		[]string{"--port", simulatorPort, "--boot-delay", "2s", "--op-duration", "500ms", "--op-durations", "clone=300ms,provision=800ms"},
		filepath.Join(demoDir, "xapi-simulator.log"))
	if err != nil {
		return fail("%v (is port %s free?)", err, simulatorPort)
	}
	stops = append(stops, func() {
		step("Stopping the simulator")
		_ = sim.Stop(10 * time.Second)
	})
	fmt.Printf("    pool coordinator %s, member %s\n", urls[0], urls[1])

	step("Starting the operator (bin/manager)")
	mgr, err := harness.Start("manager", "bin/manager",
		[]string{"--metrics-bind-address=0", "--health-probe-bind-address=0", "--zap-log-level=info"},
		[]string{"KUBECONFIG=" + kubeconfig}, filepath.Join(demoDir, "manager.log"))
	if err != nil {
		return fail("%v", err)
	}
	stops = append(stops, func() {
		step("Stopping the operator (it logs its XenAPI session out)")
		if err := mgr.Stop(15 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the operator:", err)
		}
	})

	step("Applying config/samples/ with kubectl")
	out, err := kubectl(kubeconfig, "apply", "-f", "config/samples/")
	if err != nil {
		return fail("kubectl apply: %v\n%s", err, out)
	}
	fmt.Print(indent(out))

	step("Waiting for every sample to reach its power state")
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = virtv1alpha1.AddToScheme(scheme)
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		return fail("%v", err)
	}
	if err := waitForSamples(c, mgr, signals); err != nil {
		fmt.Println(indent(mustKubectl(kubeconfig, "get", "xenhosts,xenvms", "-o", "wide")))
		return fail("%v", err)
	}

	fmt.Println()
	fmt.Print(mustKubectl(kubeconfig, "get", "xenhosts,xenvms", "-o", "wide"))
	fmt.Printf(`
The operator runs XenVMs on a simulated XenServer pool. Try it:

  export KUBECONFIG=%[1]s
  kubectl get xenvms -w                                             # watch in another terminal
  kubectl patch xenvm web-1 --type merge -p '{"spec":{"powerState":"Suspended"}}'
  kubectl delete xenvm batch-1                                      # destroys the VM and its disks
  kubectl describe xenvm web-1                                      # conditions and events

Logs: %[2]s/manager.log and %[2]s/xapi-simulator.log
Simulator stats: curl -s %[3]s/sim/stats
`, kubeconfig, demoDir, urls[0])

	if exitAfter {
		fmt.Println("\nDEMO_EXIT=1: stopping now.")
		return 0
	}
	fmt.Println("\nPress Ctrl-C to stop everything.")
	<-signals
	fmt.Println()
	return 0
}

// waitForSamples waits until every XenVM is Ready in its desired state,
// printing progress when it changes.
func waitForSamples(c client.Client, mgr *harness.Process, signals <-chan os.Signal) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	last := ""
	for {
		vms := &virtv1alpha1.XenVMList{}
		if err := c.List(ctx, vms); err != nil {
			return err
		}
		var done, pending []string
		for _, vm := range vms.Items {
			ready := meta.FindStatusCondition(vm.Status.Conditions, virtv1alpha1.ConditionReady)
			running := vm.Spec.PowerState == virtv1alpha1.PowerStateRunning
			if ready != nil && ready.Status == "True" && (!running || len(vm.Status.IPAddresses) > 0) {
				done = append(done, vm.Name)
				continue
			}
			why := "Pending"
			switch {
			case ready != nil && ready.Status == "True":
				why = "waiting for its guest agent's IP"
			case ready != nil:
				why = ready.Reason
			}
			pending = append(pending, fmt.Sprintf("%s (%s)", vm.Name, why))
		}
		sort.Strings(pending)
		progress := fmt.Sprintf("    %d/%d XenVMs in their desired state", len(done), len(vms.Items))
		if len(pending) > 0 {
			progress += "; waiting for " + strings.Join(pending, ", ")
		}
		if progress != last {
			fmt.Println(progress)
			last = progress
		}
		if len(vms.Items) > 0 && len(pending) == 0 {
			return nil
		}
		if exited, err := mgr.Exited(); exited {
			return fmt.Errorf("the operator exited (%v); the end of %s:\n%s", err, mgr.LogPath, harness.Tail(mgr.LogPath, 20))
		}
		select {
		case <-ctx.Done():
			return errors.New("the samples did not reach their states within " + waitTimeout.String())
		case <-signals:
			return errors.New("interrupted")
		case <-time.After(time.Second):
		}
	}
}

func kubectl(kubeconfig string, args ...string) (string, error) {
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

func mustKubectl(kubeconfig string, args ...string) string {
	out, err := kubectl(kubeconfig, args...)
	if err != nil {
		return fmt.Sprintf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n") + "\n"
}
