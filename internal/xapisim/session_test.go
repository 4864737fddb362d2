package xapisim

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestLogin(t *testing.T) {
	s := newSim(t, Config{Hosts: 3, AuthFailureDelay: 200 * time.Millisecond})

	t.Run("wrong credentials fail after the delay with user and message", func(t *testing.T) {
		g := NewWithT(t)
		c := newClient(t, s.URL())
		start := time.Now()
		_, f := c.call("session.login_with_password", "root", "wrong", "1.0", "test")
		g.Expect(f).To(failWith(errSessionAuthenticationFailed, "root", "Authentication failure"))
		g.Expect(time.Since(start)).To(BeNumerically(">=", 200*time.Millisecond))
	})
	t.Run("a pool member answers HOST_IS_SLAVE with the coordinator's address", func(t *testing.T) {
		g := NewWithT(t)
		for _, u := range s.URLs()[1:] {
			_, f := newClient(t, u).call("session.login_with_password", "root", "xenserver")
			g.Expect(f).To(failWith(errHostIsSlave, "127.0.0.1"))
		}
		session := newClient(t, s.URL()).login().session
		_, f := newClient(t, s.URLs()[1]).call("VM.get_all", session)
		g.Expect(f).To(failWith(errHostIsSlave, "127.0.0.1"), "other calls on a member fail too")
	})
	t.Run("the session record", func(t *testing.T) {
		g := NewWithT(t)
		c := newClient(t, s.URL()).login()
		rec := c.must("session.get_record", c.session).(map[string]any)
		g.Expect(rec).To(HaveKeyWithValue("originator", "xapisim-test"))
		g.Expect(rec).To(HaveKeyWithValue("auth_user_name", "root"))
		g.Expect(rec).To(HaveKeyWithValue("pool", false))
		g.Expect(rec).To(HaveLen(len(model["session"].fields)))
	})
	t.Run("logout invalidates the session", func(t *testing.T) {
		g := NewWithT(t)
		c := newClient(t, s.URL()).login()
		c.must("session.logout")
		_, f := c.do("VM.get_all")
		g.Expect(f).To(failWith(errSessionInvalid, c.session))
	})
}

func TestSessionCapsEvictLeastRecentlyUsed(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{SessionLimit: 3})
	login := func(user, originator string) *rawClient {
		c := newClient(t, s.URL())
		v, f := c.call("session.login_with_password", user, "xenserver", "1.0", originator)
		g.Expect(f).NotTo(HaveOccurred())
		c.session = v.(string)
		return c
	}
	valid := func(c *rawClient) bool {
		_, f := c.do("pool.get_all")
		return f == nil
	}
	a, b, c := login("root", "tool-a"), login("root", "tool-a"), login("root", "tool-a")
	other := login("root", "tool-b")
	anon := login("root", "")
	g.Expect(valid(a)).To(BeTrue()) // a is now more recently used than b
	d := login("root", "tool-a")    // the fourth of tool-a evicts its least recently used
	g.Expect(valid(b)).To(BeFalse(), "b was the least recently used of tool-a")
	g.Expect(valid(a)).To(BeTrue())
	g.Expect(valid(c)).To(BeTrue())
	g.Expect(valid(d)).To(BeTrue())
	g.Expect(valid(other)).To(BeTrue(), "other originators are counted apart")
	g.Expect(valid(anon)).To(BeTrue(), "anonymous sessions are counted apart")
	st := s.Stats()
	g.Expect(st.Evictions).To(Equal(int64(1)))
	g.Expect(st.SessionsActive).To(Equal(5))
	g.Expect(st.LoginsTotal).To(Equal(int64(6)))
}

func TestTasks(t *testing.T) {
	s := newSim(t, Config{OpDurations: map[string]time.Duration{"clone": 300 * time.Millisecond}})
	c := newClient(t, s.URL()).login()
	tmpl := c.vmByName("Debian Bookworm 12")

	t.Run("an Async call returns a pending task that succeeds with an XML-RPC result", func(t *testing.T) {
		g := NewWithT(t)
		task := c.must("Async.VM.clone", tmpl, "async-clone").(string)
		rec := c.must("task.get_record", task).(map[string]any)
		g.Expect(rec).To(HaveKeyWithValue("status", "pending"))
		g.Expect(rec).To(HaveKeyWithValue("name_label", "Async.VM.clone"))
		g.Expect(rec).To(HaveKeyWithValue("progress", BeNumerically("==", 0)))
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("success"))
		rec = c.must("task.get_record", task).(map[string]any)
		g.Expect(rec["result"]).To(MatchRegexp(`^<value>OpaqueRef:[0-9a-f-]{36}</value>$`))
		g.Expect(rec["progress"]).To(BeNumerically("==", 1))
		g.Expect(rec["finished"]).NotTo(Equal(xmlDate("19700101T00:00:00Z")))
		c.must("task.destroy", task)
		_, f := c.do("task.get_record", task)
		g.Expect(f).To(failWith(errHandleInvalid, "task", task))
	})
	t.Run("a failing Async call records error_info", func(t *testing.T) {
		g := NewWithT(t)
		task := c.must("Async.VM.start", tmpl, false, false).(string)
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("failure"))
		g.Expect(c.field("task", task, "error_info")).To(Equal([]any{errVMIsTemplate, tmpl, "start"}))
	})
	t.Run("a void result is an empty value", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "void")
		task := c.must("Async.VM.start", vm, false, false).(string)
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("success"))
		g.Expect(c.field("task", task, "result")).To(Equal("<value></value>"))
	})
	t.Run("cancelling a running operation", func(t *testing.T) {
		g := NewWithT(t)
		task := c.must("Async.VM.clone", tmpl, "cancelled").(string)
		c.must("task.cancel", task)
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("cancelled"))
		g.Expect(c.field("task", task, "error_info")).To(Equal([]any{errTaskCancelled, task}))
		g.Expect(c.must("VM.get_by_name_label", "cancelled")).To(BeEmpty())
	})
	t.Run("completed tasks beyond 200 are collected", func(t *testing.T) {
		g := NewWithT(t)
		host := c.must("host.get_all").([]any)[0]
		first := c.must("Async.host.compute_free_memory", host).(string)
		for range 230 {
			c.must("Async.host.compute_free_memory", host)
		}
		g.Eventually(func() int { return len(c.must("task.get_all").([]any)) }).Should(Equal(maxTasks))
		_, f := c.do("task.get_record", first)
		g.Expect(f).To(failWith(errHandleInvalid, "task", first), "the oldest went first")
	})
}
