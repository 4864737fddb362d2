package xapisim

import (
	"sort"
	"time"
)

// The defaults of xapi's database GC (db_gc.ml, xapi_globs.ml).
const (
	defaultGCInterval               = 30 * time.Second // db_GC_TIMER
	defaultMaxSessions              = 2 * maxTasks     // max_sessions: anonymous sessions
	defaultMaxSessionsPerOriginator = 500
	defaultMaxSessionsPerUserName   = 500
	defaultInactiveSessionTimeout   = 24 * time.Hour
	defaultLastActiveThreshold      = 600 * time.Second // threshold_last_active
	defaultCompletedTaskTimeout     = 3900 * time.Second
	defaultPendingTaskTimeout       = 24 * time.Hour
)

// runGC runs the database GC pass every GCInterval until the server closes,
// as xapi's DB GC thread does (db_gc.ml: Thread.delay db_GC_TIMER; single_pass).
func (s *Server) runGC() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		interval := s.cfg.GCInterval
		s.mu.Unlock()
		t := time.NewTimer(interval)
		select {
		case <-t.C:
			s.GC()
		case <-s.gcReset:
			t.Stop()
		case <-s.closed:
			t.Stop()
			return
		}
	}
}

// GC runs one pass of xapi's database GC now: tasks, then sessions
// (db_gc_util.ml timeout_tasks, timeout_sessions).
func (s *Server) GC() {
	s.mu.Lock()
	defer s.unlock()
	at := time.Now()
	s.timeoutTasks(at)
	s.timeoutSessions(at)
}

// timeoutSessions is db_gc_util.ml timeout_sessions. Sessions are grouped:
// intra-pool sessions (the simulator has none), anonymous ones (originator
// "" and user root or ""), root or empty-user sessions by originator, and
// other users' by user name. In each group, only sessions with no pending
// task are candidates: those inactive for longer than
// InactiveSessionTimeout are destroyed, and of the others all but the cap's
// number of most recently active are (last_active, to the second; the
// simulator keeps the newer session of two equally active ones).
func (s *Server) timeoutSessions(at time.Time) {
	anonymous := []*object{}
	groups := map[string][]*object{}
	caps := map[string]int{}
	for _, o := range s.db.all("session") {
		user, orig := o.str("auth_user_name"), o.str("originator")
		rootish := user == "" || user == "root"
		switch {
		case rootish && orig == "":
			anonymous = append(anonymous, o)
		case rootish:
			groups["originator:"+orig] = append(groups["originator:"+orig], o)
			caps["originator:"+orig] = s.cfg.MaxSessionsPerOriginator
		default:
			groups["username:"+user] = append(groups["username:"+user], o)
			caps["username:"+user] = s.cfg.MaxSessionsPerUserName
		}
	}
	for key, sessions := range groups {
		s.timeoutSessionGroup(at, sessions, caps[key])
	}
	s.timeoutSessionGroup(at, anonymous, s.cfg.MaxSessions)
}

// timeoutSessionGroup is db_gc_util.ml timeout_sessions_common.
func (s *Server) timeoutSessionGroup(at time.Time, sessions []*object, limit int) {
	threshold := at.Add(-s.cfg.InactiveSessionTimeout)
	var young []*object
	for _, o := range sessions {
		if !s.sessionUnused(o) {
			continue
		}
		if o.fields["last_active"].(time.Time).After(threshold) {
			young = append(young, o)
			continue
		}
		s.destroySession(o)
		s.stats.SessionsExpired++
	}
	if len(young) <= limit {
		return
	}
	// Newest last_active first; s.db.all gave them oldest created first.
	sort.SliceStable(young, func(i, j int) bool {
		a, b := young[i].fields["last_active"].(time.Time), young[j].fields["last_active"].(time.Time)
		if a.Equal(b) {
			return young[i].created > young[j].created
		}
		return a.After(b)
	})
	for _, o := range young[limit:] {
		s.destroySession(o)
		s.stats.Evictions++
	}
}

// sessionUnused tells whether none of the session's tasks is pending (a
// task that no longer exists counts as completed); the simulator's
// sessions have no parent session.
func (s *Server) sessionUnused(o *object) bool {
	for _, ref := range o.set("tasks") {
		if t, ok := s.db.get("task", ref.(string)); ok && t.str("status") == "pending" {
			return false
		}
	}
	return true
}

// sortBy sorts objects stably by less.
func sortBy(objs []*object, less func(a, b *object) bool) {
	sort.SliceStable(objs, func(i, j int) bool { return less(objs[i], objs[j]) })
}
