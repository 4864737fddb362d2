package xapisim

import (
	"time"
)

func init() {
	explicitHandlers["session.login_with_password"] = explicit{fn: sessionLogin, defaults: []any{"1.1", ""}}
	explicitHandlers["session.logout"] = explicit{fn: sessionLogout}
}

// sessionLogin is session.login_with_password(uname, pwd, version, originator).
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
	now := time.Now().UTC()
	sess := s.db.create("session", map[string]any{
		"this_host":          s.coordinator().ref,
		"this_user":          nullRef,
		"last_active":        now,
		"validation_time":    now,
		"pool":               false,
		"is_local_superuser": true,
		"subject":            nullRef,
		"auth_user_name":     user,
		"originator":         originator,
		"parent":             nullRef,
		"rbac_permissions":   []any{},
		"tasks":              []any{},
	})
	s.touchSession(sess)
	s.stats.LoginsTotal++
	s.evictSessions(sessionGroup(sess))
	if n := len(s.db.objects["session"]); n > s.stats.SessionsPeak {
		s.stats.SessionsPeak = n
	}
	s.stats.LoginsByOriginator[originator]++
	open := 0
	for _, o := range s.db.objects["session"] {
		if o.str("originator") == originator {
			open++
		}
	}
	s.stats.SessionsPeakByOriginator[originator] = max(s.stats.SessionsPeakByOriginator[originator], open)
	return sess.ref, nil
}

func sessionLogout(c *callCtx) (any, error) {
	c.s.destroySession(c.session)
	c.s.stats.LogoutsTotal++
	return nil, nil
}
