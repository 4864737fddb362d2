package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestControlPlaneCommand runs the command as a user does: it waits for the
// ready line, lists the CRDs with kubectl through the written kubeconfig, stops
// it with SIGTERM and checks that no process, temp directory or kubeconfig is
// left behind.
func TestControlPlaneCommand(t *testing.T) {
	g := NewWithT(t)
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set; run the tests through 'make test'")
	}
	kubectl, err := exec.LookPath("kubectl")
	g.Expect(err).NotTo(HaveOccurred(), "kubectl must be on PATH")

	dir := t.TempDir()
	bin := filepath.Join(dir, "controlplane")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))

	tmp := filepath.Join(dir, "tmp")
	g.Expect(os.Mkdir(tmp, 0o750)).To(Succeed())
	kubeconfig := filepath.Join(dir, "kube", "kubeconfig")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--crds", filepath.Join("..", "..", "config", "crd", "bases"), "--kubeconfig", kubeconfig)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	stdout, err := cmd.StdoutPipe()
	g.Expect(err).NotTo(HaveOccurred())
	cmd.Stderr = os.Stderr
	g.Expect(cmd.Start()).To(Succeed())

	lines := bufio.NewScanner(stdout)
	g.Expect(lines.Scan()).To(BeTrue(), "the command printed nothing")
	g.Expect(lines.Text()).To(HavePrefix("control plane ready"))
	go func() {
		for lines.Scan() {
			t.Log(lines.Text())
		}
	}()

	children := childrenOf(cmd.Process.Pid)
	g.Expect(children).To(ContainElements("etcd", "kube-apiserver"))

	out, err = exec.Command(kubectl, "--kubeconfig", kubeconfig, "get", "crds", "-o", "name").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	g.Expect(string(out)).To(ContainSubstring("customresourcedefinition.apiextensions.k8s.io/xenvms.virt.xen-operator.io"))
	g.Expect(string(out)).To(ContainSubstring("customresourcedefinition.apiextensions.k8s.io/xenhosts.virt.xen-operator.io"))

	g.Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	g.Expect(cmd.Wait()).To(Succeed())

	for pid, name := range children {
		g.Expect(syscall.Kill(pid, 0)).To(MatchError(syscall.ESRCH), "%s (pid %d) is still running", name, pid)
	}
	entries, err := os.ReadDir(tmp)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(entries).To(BeEmpty(), "temp directories left behind")
	g.Expect(kubeconfig).NotTo(BeAnExistingFile())
}

// childrenOf maps the pids of the direct children of pid to their command names.
func childrenOf(pid int) map[int]string {
	children := map[int]string{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		child, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		end := strings.LastIndex(s, ")")
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		children[child] = s[strings.Index(s, "(")+1 : end]
	}
	return children
}
