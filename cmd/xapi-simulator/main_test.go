package main

import (
	"bufio"
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestBinary runs bin/xapi-simulator as a user does: one "listening on" line
// per host once ready, each serving XenAPI, and a clean exit on SIGTERM.
func TestBinary(t *testing.T) {
	g := NewWithT(t)
	bin := filepath.Join(t.TempDir(), "xapi-simulator")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--hosts", "3", "--op-durations", "start=10ms,clone=5ms", "--host-memory", "64Gi")
	stdout, err := cmd.StdoutPipe()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cmd.Start()).To(Succeed())

	lines := bufio.NewScanner(stdout)
	var urls []string
	re := regexp.MustCompile(`^xapi-simulator listening on (http://127\.0\.0\.\d:\d+)$`)
	for len(urls) < 3 && lines.Scan() {
		m := re.FindStringSubmatch(lines.Text())
		g.Expect(m).NotTo(BeNil(), "unexpected line %q", lines.Text())
		urls = append(urls, m[1])
	}
	g.Expect(urls).To(HaveLen(3))
	g.Expect(urls[1]).To(HavePrefix("http://127.0.0.2:"))
	port := urls[0][strings.LastIndex(urls[0], ":"):]
	g.Expect(urls[2]).To(HaveSuffix(port), "every host listens on the same port")

	body := `<?xml version="1.0"?><methodCall><methodName>session.login_with_password</methodName><params><param><value>root</value></param><param><value>xenserver</value></param></params></methodCall>`
	resp, err := http.Post(urls[0], "text/xml", strings.NewReader(body))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.Body.Close()).To(Succeed())
	g.Expect(resp.StatusCode).To(Equal(200))

	g.Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	g.Expect(cmd.Wait()).To(Succeed())
}
