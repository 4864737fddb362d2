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

// loginAs logs in with a user name and originator and returns the client.
func loginAs(t *testing.T, url, user, originator string) *rawClient {
	t.Helper()
	c := newClient(t, url)
	v, f := c.call("session.login_with_password", user, "xenserver", "1.0", originator)
	if f != nil {
		t.Fatalf("login: %v", f)
	}
	c.session = v.(string)
	return c
}

// valid tells whether the client's session still works.
func (c *rawClient) valid() bool {
	_, f := c.do("pool.get_all")
	return f == nil
}

// TestSessionGCPassCapsEachGroup follows XENAPI.md §5.3 and xapi's
// db_gc_util.ml timeout_sessions: logins never evict anything; the database
// GC pass, every 30 s (db_gc.ml), caps each group of sessions — anonymous
// (originator "" and root), root sessions per originator, other users per
// name — keeping the most recently active. An operator that keeps one
// session under its own originator is never touched by clients that log in
// per request, anonymously or under a shared originator.
func TestSessionGCPassCapsEachGroup(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{MaxSessions: 3, MaxSessionsPerOriginator: 3, GCInterval: time.Hour})
	operator := loginAs(t, s.URL(), "root", "xen-operator/test")
	var anonymous, shared []*rawClient
	for range 8 {
		anonymous = append(anonymous, loginAs(t, s.URL(), "root", ""))
		shared = append(shared, loginAs(t, s.URL(), "root", "noisy-tool"))
		g.Expect(operator.valid()).To(BeTrue())
	}
	for _, c := range append(append([]*rawClient{}, anonymous...), shared...) {
		g.Expect(c.valid()).To(BeTrue(), "a login evicts nothing: only the GC pass does")
	}
	g.Expect(s.Stats().SessionsActive).To(Equal(17))

	s.GC()
	g.Expect(operator.valid()).To(BeTrue(), "the operator's group holds one session, under its cap")
	count := func(cs []*rawClient) int {
		n := 0
		for _, c := range cs {
			if c.valid() {
				n++
			}
		}
		return n
	}
	g.Expect(count(anonymous)).To(Equal(3), "anonymous sessions are capped at MaxSessions")
	g.Expect(count(shared)).To(Equal(3), "sessions sharing an originator are capped at MaxSessionsPerOriginator")
	st := s.Stats()
	g.Expect(st.Evictions).To(Equal(int64(10)))
	g.Expect(st.SessionsActive).To(Equal(7))

	// Users other than root form one group per user name, whatever the
	// originator.
	users := newSim(t, Config{Username: "alice", MaxSessionsPerUserName: 2, GCInterval: time.Hour})
	alice := []*rawClient{loginAs(t, users.URL(), "alice", "a"), loginAs(t, users.URL(), "alice", "b"),
		loginAs(t, users.URL(), "alice", ""), loginAs(t, users.URL(), "alice", "c")}
	users.GC()
	g.Expect(count(alice)).To(Equal(2))
}

// TestSessionGCPassEvictsTheLeastRecentlyActive: within a group the pass
// keeps the sessions with the newest last_active (db_gc_util.ml sorts them
// newest first and keeps the cap's number).
func TestSessionGCPassEvictsTheLeastRecentlyActive(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{MaxSessionsPerOriginator: 2, GCInterval: time.Hour, LastActiveThreshold: time.Second})
	a := loginAs(t, s.URL(), "root", "tool")
	time.Sleep(1100 * time.Millisecond)
	b := loginAs(t, s.URL(), "root", "tool")
	time.Sleep(1100 * time.Millisecond)
	c := loginAs(t, s.URL(), "root", "tool")
	g.Expect(a.valid()).To(BeTrue(), "a's last_active is over the threshold old: this call moves it")
	s.GC()
	g.Expect(a.valid()).To(BeTrue())
	g.Expect(b.valid()).To(BeFalse(), "b was the least recently active")
	g.Expect(c.valid()).To(BeTrue())
}

// TestSessionGCPassRunsOnItsTimer: the pass runs by itself every GCInterval
// (db_gc.ml db_GC_TIMER, 30 s in xapi), here shortened through /sim/config.
func TestSessionGCPassRunsOnItsTimer(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{MaxSessions: 1})
	first := loginAs(t, s.URL(), "root", "")
	time.Sleep(1100 * time.Millisecond) // last_active is kept to the second
	second := loginAs(t, s.URL(), "root", "")
	g.Consistently(first.valid, 300*time.Millisecond, 50*time.Millisecond).Should(BeTrue(),
		"nothing is evicted before the pass")
	postSim(g, s.URL(), "/sim/config", `{"gc_interval":"100ms"}`)
	g.Eventually(first.valid, 2*time.Second, 50*time.Millisecond).Should(BeFalse())
	g.Expect(second.valid()).To(BeTrue())
	g.Expect(getStats(g, s.URL())["sessions_evicted"]).To(BeNumerically("==", 1))
}

// TestSessionsWithPendingTasksAreNotCandidates: db_gc_util.ml
// timeout_sessions_common only considers sessions none of whose tasks is
// pending (XENAPI.md §5.3).
func TestSessionsWithPendingTasksAreNotCandidates(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{MaxSessionsPerOriginator: 1, GCInterval: time.Hour,
		OpDurations: map[string]time.Duration{"start": 5 * time.Second}})
	busy := loginAs(t, s.URL(), "root", "tool")
	vm := busy.install("Debian Bookworm 12", "busy")
	task := busy.must("Async.VM.start", vm, false, false).(string)
	g.Expect(busy.must("session.get_tasks", busy.session)).To(ContainElement(task), "a session lists its tasks")
	time.Sleep(1100 * time.Millisecond)
	idle1 := loginAs(t, s.URL(), "root", "tool")
	time.Sleep(1100 * time.Millisecond)
	idle2 := loginAs(t, s.URL(), "root", "tool")
	s.GC()
	g.Expect(busy.valid()).To(BeTrue(), "its task is pending: not a candidate, even as the oldest")
	g.Expect(idle1.valid()).To(BeFalse())
	g.Expect(idle2.valid()).To(BeTrue(), "the cap counts candidates only")
	g.Eventually(func() any { return busy.field("task", task, "status") }, 10*time.Second).Should(Equal("success"))
	s.GC()
	g.Expect(busy.valid()).To(BeFalse(), "once its task completed, the busy session is the older one")
	g.Expect(idle2.valid()).To(BeTrue())
}

// TestInactiveSessionsTimeOut: the pass destroys sessions whose last_active
// is older than inactive_session_timeout (24 h in xapi), and a call moves
// last_active only once it is older than threshold_last_active (600 s), so
// activity is known to that granularity (session_check.ml, XENAPI.md §5.3).
func TestInactiveSessionsTimeOut(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{InactiveSessionTimeout: 3 * time.Second, LastActiveThreshold: time.Second,
		GCInterval: 200 * time.Millisecond})
	idle := loginAs(t, s.URL(), "root", "idle")
	active := loginAs(t, s.URL(), "root", "active")
	first := active.must("session.get_last_active", active.session)
	g.Expect(active.must("session.get_last_active", active.session)).To(Equal(first),
		"used again at once, last_active does not move")
	deadline := time.Now().Add(5 * time.Second)
	moved := false
	for time.Now().Before(deadline) {
		g.Expect(active.valid()).To(BeTrue(), "a session in use stays")
		moved = moved || active.must("session.get_last_active", active.session) != first
		time.Sleep(250 * time.Millisecond)
	}
	g.Expect(moved).To(BeTrue(), "last_active moves once older than the threshold")
	g.Expect(idle.valid()).To(BeFalse(), "a session unused for longer than the timeout is gone")
	g.Expect(s.Stats().SessionsExpired).To(Equal(int64(1)))
}
