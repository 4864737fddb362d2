package xapisim

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func getStats(g Gomega, url string) map[string]any {
	resp, err := http.Get(url + "/sim/stats")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	var out map[string]any
	g.Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
	return out
}

func postSim(g Gomega, url, path, body string) {
	resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
}

func TestSimStats(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "stats")
	c.must("VM.start", vm, false, false)
	halted := c.install("Debian Bookworm 12", "stats-halted")
	_ = halted
	c.must("Async.VM.clone", c.vmByName("Rocky Linux 9"), "x")
	st := getStats(g, s.URL())
	for _, k := range []string{"sessions_active", "logins_total", "logouts_total", "calls", "vms", "tasks_active", "sessions_peak"} {
		g.Expect(st).To(HaveKey(k))
	}
	g.Expect(st["sessions_active"]).To(BeNumerically("==", 1))
	g.Expect(st["logins_total"]).To(BeNumerically("==", 1))
	g.Expect(st["calls"]).To(HaveKeyWithValue("VM.start", BeNumerically("==", 1)))
	g.Expect(st["calls"]).To(HaveKeyWithValue("Async.VM.clone", BeNumerically("==", 1)))
	g.Expect(st["vms"]).To(Equal(map[string]any{"Running": float64(1), "Halted": float64(1)}),
		"templates and control domains are not counted")
}

func TestSimConfigAtRunTime(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	postSim(g, s.URL(), "/sim/config", `{"latency":"200ms","op_durations":{"start":"50ms"}}`)
	start := time.Now()
	c.must("pool.get_all")
	g.Expect(time.Since(start)).To(BeNumerically(">=", 200*time.Millisecond))
	postSim(g, s.URL(), "/sim/config", `{"latency":"0s","failure_rate":1}`)
	vm := c.vmByName("Debian Bookworm 12")
	_, f := c.do("VM.clone", vm, "fails")
	g.Expect(f).To(failWith(errSRBackendFailure))
	g.Expect(s.Stats().FailuresInjected).To(BeNumerically("==", 1))
	_, f = c.do("VM.get_record", vm)
	g.Expect(f).NotTo(HaveOccurred(), "reads never fail")
}

func TestFlushRestartRefuse(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "survivor")
	c.must("VM.start", vm, false, false)

	postSim(g, s.URL(), "/sim/flush-sessions", "")
	_, f := c.do("VM.get_all")
	g.Expect(f).To(failWith(errSessionInvalid, c.session))

	c.login()
	postSim(g, s.URL(), "/sim/restart?downtime=300ms", "")
	g.Eventually(func() error {
		_, err := http.Get(s.URL() + "/sim/stats")
		return err
	}).Should(HaveOccurred(), "connections are refused while xapi restarts")
	g.Eventually(func() error {
		_, err := http.Get(s.URL() + "/sim/stats")
		return err
	}, 5*time.Second).Should(Succeed())
	_, f = c.do("VM.get_all")
	g.Expect(f).To(failWith(errSessionInvalid, c.session), "sessions do not survive a restart")
	c.login()
	g.Expect(c.field("VM", vm, "power_state")).To(Equal("Running"), "VMs do")
}

func TestTLS(t *testing.T) {
	g := NewWithT(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	s := newSim(t, Config{TLS: true, CAFile: caFile, Hosts: 2})
	g.Expect(s.URL()).To(HavePrefix("https://127.0.0.1:"))
	pem, err := os.ReadFile(caFile)
	g.Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	g.Expect(pool.AppendCertsFromPEM(pem)).To(BeTrue())

	verified := newClient(t, s.URL())
	verified.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	verified.login()
	g.Expect(verified.must("VM.get_all")).NotTo(BeEmpty())

	member := newClient(t, s.URLs()[1])
	member.http = verified.http
	_, f := member.call("session.login_with_password", "root", "xenserver")
	g.Expect(f).To(failWith(errHostIsSlave, "127.0.0.1"), "members' addresses are in the certificate too")

	_, err = http.Post(s.URL(), "text/xml", strings.NewReader(string(methodCall("system.listMethods"))))
	g.Expect(err).To(MatchError(ContainSubstring("certificate")), "an unverified client is refused")
}

// BenchmarkSimpleCalls measures calls per second over HTTP with latency
// injection off; the simulator must never be the bottleneck (>= 5,000/s).
func BenchmarkSimpleCalls(b *testing.B) {
	s := newSim(b, Config{})
	c := newClient(b, s.URL()).login()
	vm := c.vmByName("Debian Bookworm 12")
	body := methodCall("VM.get_power_state", c.session, vm)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
		for pb.Next() {
			resp, err := client.Post(s.URL(), "text/xml", strings.NewReader(string(body)))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

func TestResponseLoss(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	tmpl := c.vmByName("Debian Bookworm 12")
	postSim(g, s.URL(), "/sim/config", `{"response_loss_rate":1}`)

	_, err := http.Post(s.URL(), "text/xml", strings.NewReader(string(methodCall("VM.clone", c.session, tmpl, "lost-answer"))))
	g.Expect(err).To(HaveOccurred(), "the connection closes without an answer")
	_, err = http.Post(s.URL()+"/jsonrpc", "application/json", strings.NewReader(
		`{"jsonrpc":"2.0","method":"VM.clone","params":["`+c.session+`","`+tmpl+`","lost-json-answer"],"id":1}`))
	g.Expect(err).To(HaveOccurred(), "over JSON-RPC too")
	g.Expect(c.must("VM.get_by_name_label", "lost-answer")).To(HaveLen(1), "the call ran all the same")
	g.Expect(c.must("VM.get_by_name_label", "lost-json-answer")).To(HaveLen(1))

	_, err = http.Post(s.URL(), "text/xml", strings.NewReader(string(methodCall("Async.VM.clone", c.session, tmpl, "lost-task"))))
	g.Expect(err).To(HaveOccurred(), "an Async call's task reference is lost too")
	g.Eventually(func() []SnapshotTask { return s.Snapshot().Tasks }).Should(ContainElement(And(
		HaveField("NameLabel", "Async.VM.clone"), HaveField("Status", "success"), HaveField("Originator", "xapisim-test"))),
		"and its task runs on, undestroyed")

	g.Expect(c.must("VM.get_all")).NotTo(BeEmpty(), "reads are always answered")
	// The count moves once the connection is closed, just after the client
	// sees it close.
	g.Eventually(func() map[string]int { return s.Stats().ResponsesLost }).Should(
		Equal(map[string]int{"VM.clone": 2, "Async.VM.clone": 1}))
	g.Expect(getStats(g, s.URL())).To(HaveKeyWithValue("responses_lost", HaveLen(2)))

	postSim(g, s.URL(), "/sim/config", `{"response_loss_rate":0}`)
	g.Expect(c.must("VM.clone", tmpl, "answered")).To(HavePrefix("OpaqueRef:"))
}

func TestSnapshot(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	before := s.Stats().CallsTotal
	snap := s.Snapshot()
	g.Expect(s.Stats().CallsTotal).To(Equal(before), "a snapshot is no call")
	g.Expect(snap.Sessions).To(ConsistOf(And(HaveField("Originator", "xapisim-test"), HaveField("User", "root"),
		HaveField("LoggedIn", BeTemporally("~", time.Now(), 5*time.Second)))))
	var templates, domains int
	for _, vm := range snap.VMs {
		if vm.IsTemplate {
			templates++
		}
		if vm.IsControlDomain {
			domains++
		}
	}
	g.Expect(templates).To(Equal(7))
	g.Expect(domains).To(Equal(2))
	g.Expect(snap.VDIs).To(BeEmpty(), "templates carry disks to provision, not VDIs")

	vm := c.install("Debian Bookworm 12", "snap")
	c.must("VM.start", vm, false, false)
	c.must("VM.suspend", vm)
	snap = s.Snapshot()
	var got SnapshotVM
	for _, v := range snap.VMs {
		if v.Ref == vm {
			got = v
		}
	}
	g.Expect(got.NameLabel).To(Equal("snap"))
	g.Expect(got.PowerState).To(Equal("Suspended"))
	g.Expect(got.VBDs).To(HaveLen(1))
	g.Expect(got.SuspendVDI).To(HavePrefix("OpaqueRef:"))
	g.Expect(snap.VDIs).To(ConsistOf(
		And(HaveField("Type", "system"), HaveField("VBDs", got.VBDs)),
		And(HaveField("Ref", got.SuspendVDI), HaveField("Type", "suspend"), HaveField("VBDs", BeEmpty()))))
	g.Expect(snap.Tasks).To(BeEmpty(), "synchronous calls' tasks are gone when they return")
}

func TestRestartKillsCallsUnderWay(t *testing.T) {
	for _, downtime := range []time.Duration{0, 200 * time.Millisecond} {
		t.Run(downtime.String(), func(t *testing.T) {
			g := NewWithT(t)
			s := newSim(t, Config{Latency: 300 * time.Millisecond})
			errs := make(chan error, 1)
			go func() {
				_, err := http.Post(s.URL(), "text/xml", strings.NewReader(string(methodCall(
					"session.login_with_password", "root", "xenserver", "1.0", "under-way"))))
				errs <- err
			}()
			time.Sleep(100 * time.Millisecond)
			s.Restart(downtime)
			g.Expect(<-errs).To(HaveOccurred(), "the call dies with xapi: no answer")
			g.Expect(s.Snapshot().Sessions).To(BeEmpty(), "and no session outlives the restart")
			g.Expect(s.Stats().ResponsesLost).To(BeEmpty(), "that is no lost answer")
			g.Eventually(func() error {
				_, err := http.Get(s.URL() + "/sim/stats")
				return err
			}, 5*time.Second).Should(Succeed())
			c := newClient(t, s.URL()).login()
			g.Expect(c.must("VM.get_all")).NotTo(BeEmpty(), "calls after the restart are served")
		})
	}
}
