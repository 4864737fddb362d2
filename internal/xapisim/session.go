package xapisim

import (
	"time"
)

func init() {
	explicitHandlers["session.login_with_password"] = explicit{fn: sessionLogin, defaults: []any{"1.1", ""}}
	explicitHandlers["session.logout"] = explicit{fn: sessionLogout}
}

// sessionLogin is session.login_with_password(uname, pwd, version,
// originator). It never evicts anything: xapi caps sessions on its database
// GC pass (gc.go), not at login.
func sessionLogin(c *callCtx) (any, error) {
	s := c.s
	if c.via != s.hosts[0] {
		return nil, newFailure(errHostIsSlave, s.hosts[0].ip)
	}
	user, password, originator := c.str(0), c.str(1), c.str(3)
	if user != s.cfg.Username || password != s.cfg.Password {
		s.stats.LoginsFailed++
		delay := s.cfg.AuthFailureDelay
		s.unlock()
		s.sleep(delay)
		s.mu.Lock()
		return nil, newFailure(errSessionAuthenticationFailed, user, "Authentication failure")
	}
	at := now()
	sess := s.db.create("session", map[string]any{
		"this_host":          s.coordinator().ref,
		"this_user":          nullRef,
		"last_active":        at,
		"validation_time":    at,
		"pool":               false,
		"is_local_superuser": true,
		"subject":            nullRef,
		"auth_user_name":     user,
		"originator":         originator,
		"parent":             nullRef,
		"rbac_permissions":   []any{},
		"tasks":              []any{},
	})
	s.stats.LoginsTotal++
	if n := len(s.db.objects["session"]); n > s.stats.SessionsPeak {
		s.stats.SessionsPeak = n
	}
	s.stats.LoginsByOriginator[originator]++
	s.openByOriginator[originator]++
	s.stats.SessionsPeakByOriginator[originator] = max(s.stats.SessionsPeakByOriginator[originator],
		s.openByOriginator[originator])
	return sess.ref, nil
}

func sessionLogout(c *callCtx) (any, error) {
	c.s.destroySession(c.session)
	c.s.stats.LogoutsTotal++
	return nil, nil
}

// touchSession is what session_check.ml does on every call: last_active
// moves to now, but only once it is older than the refresh threshold (600 s
// in xapi), so that it is known to that granularity only.
func (s *Server) touchSession(o *object) {
	at := time.Now()
	if at.After(o.fields["last_active"].(time.Time).Add(s.cfg.LastActiveThreshold)) {
		s.db.update(o, "last_active", at.UTC().Truncate(time.Second))
	}
}

func (s *Server) destroySession(o *object) {
	if _, ok := s.db.get("session", o.ref); !ok {
		return
	}
	s.db.destroy(o)
	s.openByOriginator[o.str("originator")]--
	// Wake event.from calls of this session so that they fail.
	s.db.dirty = true
}
