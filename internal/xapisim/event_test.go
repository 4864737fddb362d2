package xapisim

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// events calls event.from and returns its events and token.
func (c *rawClient) events(classes []string, token string, timeout float64) ([]map[string]any, string) {
	c.t.Helper()
	v := c.must("event.from", classes, token, timeout).(map[string]any)
	var out []map[string]any
	for _, e := range v["events"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out, v["token"].(string)
}

func TestEventFrom(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()

	t.Run("an empty token returns every object as add, with xapi's token and counts", func(t *testing.T) {
		g := NewWithT(t)
		_, body := c.post("/", "text/xml", methodCall("event.from", c.session, []string{"vm", "HOST"}, "", 1.0))
		g.Expect(string(body)).To(MatchRegexp(`<name>valid_ref_counts</name><value><struct>(<member><name>[a-z_]+</name><value><i4>\d+</i4></value></member>)+</struct>`))
		evs, token := c.events([]string{"vm", "HOST"}, "", 1)
		g.Expect(token).To(MatchRegexp(`^\d{20},\d{20}$`))
		g.Expect(evs).To(HaveLen(len(c.must("VM.get_all").([]any)) + len(c.must("host.get_all").([]any))))
		for _, e := range evs {
			g.Expect(e).To(HaveKeyWithValue("operation", "add"))
			g.Expect(e["class"]).To(BeElementOf("vm", "host"))
			g.Expect(e).To(HaveKey("snapshot"))
		}
	})
	t.Run("valid_ref_counts counts every table of the database, subscribed or not", func(t *testing.T) {
		// xapi_event.ml from folds over the whole tableset (XENAPI.md §12.1).
		g := NewWithT(t)
		v := c.must("event.from", []string{"vm"}, "", 0.0).(map[string]any)
		counts := v["valid_ref_counts"].(map[string]any)
		g.Expect(counts).To(HaveLen(len(datamodelTables)))
		for _, class := range []string{"VM", "host", "host_cpu", "PBD", "PIF", "PIF_metrics", "SR", "VDI", "VBD",
			"VIF", "network", "pool", "task", "VM_metrics", "host_metrics"} {
			g.Expect(counts).To(HaveKeyWithValue(strings.ToLower(class),
				BeNumerically("==", len(c.must(class+".get_all").([]any)))), class)
		}
		g.Expect(counts).To(HaveKeyWithValue("session", BeNumerically(">=", 1)), "sessions are a table too")
		for _, class := range []string{"sm", "console", "pool_update", "vgpu", "vm_appliance"} {
			g.Expect(counts).To(HaveKeyWithValue(class, BeNumerically("==", 0)), "tables the simulator does not fill")
		}
		g.Expect(counts).NotTo(HaveKey("event"), "event is not a table")
		g.Expect(counts).NotTo(HaveKey("message"), "nor is message")
	})
	t.Run("changes since a token are coalesced into one mod per object", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "events")
		_, token := c.events([]string{"vm"}, "", 0)
		c.must("VM.set_name_description", vm, "one")
		c.must("VM.set_name_description", vm, "two")
		evs, next := c.events([]string{"vm"}, token, 5)
		g.Expect(evs).To(HaveLen(1))
		g.Expect(evs[0]).To(HaveKeyWithValue("operation", "mod"))
		g.Expect(evs[0]).To(HaveKeyWithValue("ref", vm))
		g.Expect(evs[0]["snapshot"]).To(HaveKeyWithValue("name_description", "two"))
		g.Expect(next > token).To(BeTrue(), "tokens compare lexicographically")

		c.must("VM.destroy", vm)
		evs, _ = c.events([]string{"vm"}, next, 5)
		g.Expect(evs).To(ContainElement(And(HaveKeyWithValue("operation", "del"), HaveKeyWithValue("ref", vm), Not(HaveKey("snapshot")))))
	})
	t.Run("a new object is an add", func(t *testing.T) {
		g := NewWithT(t)
		_, token := c.events([]string{"vm"}, "", 0)
		vm := c.must("VM.clone", c.vmByName("Rocky Linux 9"), "added").(string)
		evs, _ := c.events([]string{"vm"}, token, 5)
		g.Expect(evs).To(ContainElement(And(HaveKeyWithValue("operation", "add"), HaveKeyWithValue("ref", vm))))
	})
	t.Run("one object by class/ref", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "one-object")
		other := c.install("Debian Bookworm 12", "other-object")
		_, token := c.events([]string{"vm"}, "", 0)
		c.must("VM.set_name_description", other, "x")
		c.must("VM.set_name_description", vm, "x")
		evs, _ := c.events([]string{"VM/" + vm}, token, 5)
		g.Expect(evs).To(HaveLen(1))
		g.Expect(evs[0]).To(HaveKeyWithValue("ref", vm))
	})
	t.Run("it blocks until the timeout when nothing changes", func(t *testing.T) {
		g := NewWithT(t)
		_, token := c.events([]string{"vm"}, "", 0)
		start := time.Now()
		evs, same := c.events([]string{"vm"}, token, 0.5)
		g.Expect(evs).To(BeEmpty())
		g.Expect(same).To(Equal(token))
		g.Expect(time.Since(start)).To(BeNumerically(">=", 450*time.Millisecond))
	})
	t.Run("it returns as soon as something changes", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "wake")
		_, token := c.events([]string{"vm"}, "", 0)
		go func() {
			time.Sleep(100 * time.Millisecond)
			c.must("VM.start", vm, false, false)
		}()
		start := time.Now()
		evs, _ := c.events([]string{"vm"}, token, 30)
		g.Expect(time.Since(start)).To(BeNumerically("<", 5*time.Second))
		g.Expect(evs).To(ContainElement(HaveKeyWithValue("ref", vm)))
	})
	t.Run("event.inject", func(t *testing.T) {
		g := NewWithT(t)
		pool := c.must("pool.get_all").([]any)[0].(string)
		token := c.must("event.inject", "pool", pool).(string)
		evs, _ := c.events([]string{"pool"}, token, 5)
		g.Expect(evs).To(ConsistOf(And(HaveKeyWithValue("operation", "mod"), HaveKeyWithValue("ref", pool))))
		_, f := c.do("event.inject", "pool", "OpaqueRef:nope")
		g.Expect(f).To(failWith(errHandleInvalid, "pool", "OpaqueRef:nope"))
	})
	t.Run("a bad token", func(t *testing.T) {
		g := NewWithT(t)
		_, f := c.do("event.from", []string{"vm"}, "garbage", 1.0)
		g.Expect(f).To(failWith(errEventFromTokenParseFailure, "garbage"))
	})
	t.Run("a destroyed session wakes its blocked call with SESSION_INVALID", func(t *testing.T) {
		g := NewWithT(t)
		other := newClient(t, s.URL()).login()
		_, token := other.events([]string{"vm"}, "", 0)
		done := make(chan *Failure, 1)
		go func() {
			_, f := other.do("event.from", []string{"vm"}, token, 60.0)
			done <- f
		}()
		time.Sleep(200 * time.Millisecond)
		c.must("session.logout") // not other's session: nothing happens to other
		c.login()
		other2 := other.withSession(other.session)
		other2.must("session.logout")
		g.Eventually(done, 5*time.Second).Should(Receive(failWith(errSessionInvalid, other.session)))
	})
}

// TestConcurrentClientsWithALongPoll runs many clients while a long poll is
// open: the poll never delays the others, and the race detector sees the
// simulator's locking.
func TestConcurrentClientsWithALongPoll(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{OpDuration: 20 * time.Millisecond})
	c := newClient(t, s.URL()).login()
	_, token := c.events([]string{"vm"}, "", 0)
	poll := make(chan int, 1)
	go func() {
		seen := 0
		tok := token
		deadline := time.Now().Add(20 * time.Second)
		for seen < 20 && time.Now().Before(deadline) {
			evs, next := c.events([]string{"vm"}, tok, 2)
			seen += len(evs)
			tok = next
		}
		poll <- seen
	}()

	var wg sync.WaitGroup
	errs := make(chan string, 100)
	start := time.Now()
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newClient(t, s.URL()).login()
			vm := w.install("Debian Bookworm 12", "concurrent-"+strings.Repeat("x", i))
			for _, op := range []string{"VM.start", "VM.pause", "VM.unpause", "VM.hard_shutdown", "VM.destroy"} {
				args := []any{vm}
				if op == "VM.start" {
					args = append(args, false, false)
				}
				if _, f := w.do(op, args...); f != nil {
					errs <- op + ": " + f.Error()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	g.Expect(errs).To(BeEmpty())
	g.Expect(time.Since(start)).To(BeNumerically("<", 10*time.Second))
	g.Eventually(poll, 25*time.Second).Should(Receive(BeNumerically(">=", 20)))
	g.Expect(s.Stats().VMs).To(BeEmpty(), "every VM was destroyed")
}

// TestEventsOfDevicesAndStorage checks that event.from delivers what the
// network and disk calls do (xapi_event.ml: every table's changes): VIFs,
// VBDs and VDIs added, modified and deleted; networks and SRs modified as
// their VIFs, VDIs and sizes change.
func TestEventsOfDevicesAndStorage(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	classes := []string{"vif", "vbd", "vdi", "network", "sr"}
	vm := c.install("Debian Bookworm 12", "events")
	network := c.refByName("network", networkEth1)
	sr := c.srRef(srNFS)
	_, token := c.events(classes, "", 0)
	seen := func(want ...OmegaMatcher) {
		t.Helper()
		var all []map[string]any
		g.Eventually(func() []map[string]any {
			evs, next := c.events(classes, token, 1)
			token = next
			all = append(all, evs...)
			return all
		}, 5*time.Second).Should(ContainElements(want))
	}
	event := func(class, op, ref string) OmegaMatcher {
		return And(HaveKeyWithValue("class", class), HaveKeyWithValue("operation", op), HaveKeyWithValue("ref", ref))
	}

	vif := c.createVIF(vm, networkEth1, "0")
	vdi := c.dataDisk(srNFS)
	vbd := c.must("VBD.create", vbdRecord(vm, vdi, "1")).(string)
	seen(event("vif", "add", vif), event("vdi", "add", vdi), event("vbd", "add", vbd),
		And(event("network", "mod", network), HaveKeyWithValue("snapshot", HaveKeyWithValue("VIFs", ContainElement(vif)))),
		And(event("sr", "mod", sr), HaveKeyWithValue("snapshot", HaveKeyWithValue("VDIs", ContainElement(vdi)))))

	c.must("VM.start", vm, false, false)
	c.must("VDI.set_name_label", vdi, "renamed")
	simSR(g, s.URL(), http.MethodPost, "name="+c.field("SR", sr, "uuid").(string)+"&free=1000000000")
	seen(And(event("vif", "mod", vif), HaveKeyWithValue("snapshot", HaveKeyWithValue("currently_attached", true))),
		And(event("vbd", "mod", vbd), HaveKeyWithValue("snapshot", HaveKeyWithValue("device", "xvdb"))),
		And(event("vdi", "mod", vdi), HaveKeyWithValue("snapshot", HaveKeyWithValue("name_label", "renamed"))),
		And(event("sr", "mod", sr), HaveKeyWithValue("snapshot", HaveKeyWithValue("physical_size", Not(Equal("17592186044416"))))))

	c.must("VM.hard_shutdown", vm)
	c.must("VIF.destroy", vif)
	c.must("VBD.destroy", vbd)
	c.must("VDI.destroy", vdi)
	seen(And(event("vif", "del", vif), Not(HaveKey("snapshot"))), event("vbd", "del", vbd), event("vdi", "del", vdi))
}
