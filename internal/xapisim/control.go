package xapisim

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RuntimeConfig is what /sim/config reads and changes while the simulator runs.
type RuntimeConfig struct {
	Latency          Duration            `json:"latency"`
	Jitter           Duration            `json:"jitter"`
	OpDuration       Duration            `json:"op_duration"`
	OpDurations      map[string]Duration `json:"op_durations"`
	BootDelay        Duration            `json:"boot_delay"`
	FailureRate      float64             `json:"failure_rate"`
	ResponseLossRate float64             `json:"response_loss_rate"`
	AuthFailureDelay Duration            `json:"auth_failure_delay"`
	// The database GC pass: its interval, the session caps and timeouts.
	GCInterval               Duration `json:"gc_interval"`
	MaxSessions              int      `json:"max_sessions"`
	MaxSessionsPerOriginator int      `json:"max_sessions_per_originator"`
	MaxSessionsPerUserName   int      `json:"max_sessions_per_user_name"`
	InactiveSessionTimeout   Duration `json:"inactive_session_timeout"`
	LastActiveThreshold      Duration `json:"last_active_threshold"`
	CompletedTaskTimeout     Duration `json:"completed_task_timeout"`
	PendingTaskTimeout       Duration `json:"pending_task_timeout"`
}

// Duration is a time.Duration written as a Go duration string ("150ms").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Runtime returns the settings that can change at run time.
func (s *Server) Runtime() RuntimeConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := RuntimeConfig{
		Latency: Duration(s.cfg.Latency), Jitter: Duration(s.cfg.Jitter), OpDuration: Duration(s.cfg.OpDuration),
		BootDelay: Duration(s.cfg.BootDelay), FailureRate: s.cfg.FailureRate, ResponseLossRate: s.cfg.ResponseLossRate,
		AuthFailureDelay: Duration(s.cfg.AuthFailureDelay), OpDurations: map[string]Duration{},
		GCInterval: Duration(s.cfg.GCInterval), MaxSessions: s.cfg.MaxSessions,
		MaxSessionsPerOriginator: s.cfg.MaxSessionsPerOriginator, MaxSessionsPerUserName: s.cfg.MaxSessionsPerUserName,
		InactiveSessionTimeout: Duration(s.cfg.InactiveSessionTimeout),
		LastActiveThreshold:    Duration(s.cfg.LastActiveThreshold),
		CompletedTaskTimeout:   Duration(s.cfg.CompletedTaskTimeout), PendingTaskTimeout: Duration(s.cfg.PendingTaskTimeout),
	}
	for k, v := range s.cfg.OpDurations {
		rc.OpDurations[k] = Duration(v)
	}
	return rc
}

// SetRuntime changes the settings that can change at run time; GC settings
// left at zero take xapi's defaults, and a new GC interval starts at once.
func (s *Server) SetRuntime(rc RuntimeConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Latency, s.cfg.Jitter = time.Duration(rc.Latency), time.Duration(rc.Jitter)
	s.cfg.OpDuration, s.cfg.BootDelay = time.Duration(rc.OpDuration), time.Duration(rc.BootDelay)
	s.cfg.FailureRate, s.cfg.AuthFailureDelay = rc.FailureRate, time.Duration(rc.AuthFailureDelay)
	s.cfg.ResponseLossRate = rc.ResponseLossRate
	s.cfg.OpDurations = map[string]time.Duration{}
	for k, v := range rc.OpDurations {
		s.cfg.OpDurations[k] = time.Duration(v)
	}
	interval := s.cfg.GCInterval
	s.cfg.GCInterval = time.Duration(rc.GCInterval)
	s.cfg.MaxSessions, s.cfg.MaxSessionsPerOriginator = rc.MaxSessions, rc.MaxSessionsPerOriginator
	s.cfg.MaxSessionsPerUserName = rc.MaxSessionsPerUserName
	s.cfg.InactiveSessionTimeout = time.Duration(rc.InactiveSessionTimeout)
	s.cfg.LastActiveThreshold = time.Duration(rc.LastActiveThreshold)
	s.cfg.CompletedTaskTimeout = time.Duration(rc.CompletedTaskTimeout)
	s.cfg.PendingTaskTimeout = time.Duration(rc.PendingTaskTimeout)
	s.cfg.gcDefaults()
	if s.cfg.GCInterval != interval {
		select {
		case s.gcReset <- struct{}{}:
		default:
		}
	}
}

// SetPassword changes the password logins need, as an administrator
// changing it would; existing sessions stay valid.
func (s *Server) SetPassword(password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Password = password
}

// FlushSessions destroys every session, as if xapi's GC had collected them.
func (s *Server) FlushSessions() {
	s.mu.Lock()
	defer s.unlock()
	for _, sess := range s.db.all("session") {
		s.destroySession(sess)
	}
}

// Restart simulates a xapi restart: connections drop, calls under way die
// with the process, sessions and tasks are lost (operations in flight are
// cancelled), VMs and everything else are kept. The endpoints refuse
// connections for downtime.
func (s *Server) Restart(downtime time.Duration) {
	if downtime > 0 {
		// The process goes first, so that nothing reaches it in between.
		s.Refuse(downtime)
	}
	s.mu.Lock()
	s.epoch++
	for _, t := range s.db.all("task") {
		if t.str("status") == "pending" {
			t.sim.aborted = true
			s.cancelTask(t)
		}
		s.db.destroy(t)
	}
	for _, sess := range s.db.all("session") {
		s.destroySession(sess)
	}
	s.unlock()
}

// errRestarted fails a call that xapi's restart interrupted: its connection
// closes without an answer.
var errRestarted = newFailure(errInternalError, "xapi restarted")

// Refuse closes every listener and connection for d, so that clients see
// refused connections, then serves again on the same addresses.
func (s *Server) Refuse(d time.Duration) {
	if !s.refusing.CompareAndSwap(false, true) {
		return
	}
	for _, h := range s.hosts {
		_ = h.ln.Close()
		h.conns.Range(func(k, _ any) bool {
			_ = k.(net.Conn).Close()
			return true
		})
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.refusing.Store(false)
		if !s.sleep(d) {
			return
		}
		for _, h := range s.hosts {
			for attempt := 0; ; attempt++ {
				ln, err := net.Listen("tcp", net.JoinHostPort(h.ip, fmt.Sprint(s.port)))
				if err == nil {
					s.serve(h, ln)
					break
				}
				if attempt > 50 || !s.sleep(100*time.Millisecond) {
					return
				}
			}
		}
	}()
}

// loseResponse drops the answer to a call that xapi's restart interrupted
// and, with probability ResponseLossRate, to a mutating call: the call has
// run, and the connection closes without a reply, so that the client cannot
// tell whether it did. It tells whether it dropped the answer.
func (s *Server) loseResponse(w http.ResponseWriter, name string, fail *Failure) bool {
	wire, async := strings.CutPrefix(name, "Async.")
	m := lookupMethod(wire, !async)
	s.mu.Lock()
	lose := m != nil && m.mutating && s.cfg.ResponseLossRate > 0 && s.rng.Float64() < s.cfg.ResponseLossRate
	s.mu.Unlock()
	if !lose && fail != errRestarted {
		return false
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return false
	}
	_ = conn.Close()
	if fail != errRestarted {
		s.mu.Lock()
		s.stats.ResponsesLost[name]++
		s.mu.Unlock()
	}
	return true
}

// handleSim serves the simulation controls under /sim/ (each documented in
// README.md, "The XenAPI simulator"):
//
//	GET  /sim/stats, /sim/methods
//	GET|POST /sim/config                    the RuntimeConfig, as JSON
//	POST /sim/flush-sessions, /sim/gc
//	POST /sim/restart?downtime=2s, /sim/refuse?duration=5s
//	GET|POST /sim/sr?name=<SR name_label or uuid>&physical_size=<bytes>|free=<bytes>
//	GET|POST /sim/guest?vm=<VM name_label or uuid>&mode=<mode>&duration=<duration>
//	POST /sim/brownfield?count=<n>&start=<bool>[&template=<name>][&prefix=<name>]
func (s *Server) handleSim(w http.ResponseWriter, r *http.Request) {
	writeJSON := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	post := func() bool {
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return false
		}
		return true
	}
	duration := func(name string) (time.Duration, bool) {
		v := r.URL.Query().Get(name)
		if v == "" {
			return 0, true
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, fmt.Sprintf("bad %s: %v", name, err), http.StatusBadRequest)
			return 0, false
		}
		return d, true
	}
	switch r.URL.Path {
	case "/sim/stats":
		writeJSON(s.Stats())
	case "/sim/methods":
		writeJSON(Signatures())
	case "/sim/config":
		if r.Method == http.MethodPost {
			rc := s.Runtime()
			if err := json.NewDecoder(r.Body).Decode(&rc); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.SetRuntime(rc)
		}
		writeJSON(s.Runtime())
	case "/sim/flush-sessions":
		if post() {
			s.FlushSessions()
			writeJSON(map[string]string{"result": "sessions flushed"})
		}
	case "/sim/gc":
		if post() {
			s.GC()
			writeJSON(map[string]string{"result": "database GC pass done"})
		}
	case "/sim/restart":
		if d, ok := duration("downtime"); ok && post() {
			writeJSON(map[string]string{"result": "restarting"})
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			go s.Restart(d)
		}
	case "/sim/sr":
		s.simSR(w, r)
	case "/sim/guest":
		s.simGuest(w, r)
	case "/sim/brownfield":
		s.simBrownfield(w, r)
	case "/sim/refuse":
		if d, ok := duration("duration"); ok && post() {
			if d <= 0 {
				d = 5 * time.Second
			}
			writeJSON(map[string]string{"result": "refusing connections for " + d.String()})
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			go s.Refuse(d)
		}
	default:
		http.NotFound(w, r)
	}
}

// SRSize is an SR's size and use, as GET and POST /sim/sr report them.
type SRSize struct {
	UUID                string `json:"uuid"`
	NameLabel           string `json:"name_label"`
	Type                string `json:"type"`
	PhysicalSize        int64  `json:"physical_size"`
	PhysicalUtilisation int64  `json:"physical_utilisation"`
	VirtualAllocation   int64  `json:"virtual_allocation"`
}

// simSR serves /sim/sr: GET lists the SRs' sizes; POST
// ?name=<name_label or uuid> changes the physical_size of every SR it names,
// to physical_size=<bytes>, or to what is used plus free=<bytes>, as if the
// storage had been resized and the SR scanned: a test makes an SR nearly
// full in one call.
func (s *Server) simSR(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.unlock()
	var srs []*object
	for _, sr := range s.db.all("SR") {
		if name := q.Get("name"); name == "" || sr.str("uuid") == name || sr.str("name_label") == name {
			srs = append(srs, sr)
		}
	}
	if r.Method == http.MethodPost {
		if len(srs) == 0 || q.Get("name") == "" {
			http.Error(w, fmt.Sprintf("no SR named %q", q.Get("name")), http.StatusNotFound)
			return
		}
		size, err := strconv.ParseInt(q.Get("physical_size"), 10, 64)
		free, errFree := strconv.ParseInt(q.Get("free"), 10, 64)
		if (err == nil) == (errFree == nil) || size < 0 || free < 0 {
			http.Error(w, "give physical_size=<bytes> or free=<bytes>", http.StatusBadRequest)
			return
		}
		for _, sr := range srs {
			if errFree == nil {
				size = sr.int("physical_utilisation") + free
			}
			s.db.update(sr, "physical_size", size)
		}
	}
	out := []SRSize{}
	for _, sr := range srs {
		out = append(out, SRSize{UUID: sr.str("uuid"), NameLabel: sr.str("name_label"), Type: sr.str("type"),
			PhysicalSize: sr.int("physical_size"), PhysicalUtilisation: sr.int("physical_utilisation"),
			VirtualAllocation: sr.int("virtual_allocation")})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// GuestMode is a VM's guest mode, as GET and POST /sim/guest report it.
type GuestMode struct {
	VM       string   `json:"vm"`
	Mode     string   `json:"mode"`
	Duration Duration `json:"duration"`
}

// simGuest serves /sim/guest?vm=<name_label or uuid>: GET reports how the
// VM's guest reports its addresses; POST &mode=<mode>&duration=<duration>
// changes it: normal (addresses as soon as an interface is up), linklocal (a
// link-local address, 169.254.x.y and fe80::, for duration before the real
// one), delay (no address for duration) or none (never an address). A
// running guest brings its interfaces up again, so that the mode shows at
// once; the mode lasts across reboots.
func (s *Server) simGuest(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.unlock()
	var vms []*object
	for _, vm := range s.db.all("VM") {
		if vm.str("uuid") == q.Get("vm") || vm.str("name_label") == q.Get("vm") {
			vms = append(vms, vm)
		}
	}
	if len(vms) != 1 {
		http.Error(w, fmt.Sprintf("%d VMs named %q", len(vms), q.Get("vm")), http.StatusNotFound)
		return
	}
	vm := vms[0]
	if r.Method == http.MethodPost {
		m := guestMode{mode: q.Get("mode")}
		d, err := time.ParseDuration(q.Get("duration"))
		if q.Get("duration") == "" {
			d, err = 0, nil
		}
		if !guestModes[m.mode] || err != nil || d < 0 {
			http.Error(w, "give mode=normal|linklocal|delay|none and duration=<duration>", http.StatusBadRequest)
			return
		}
		m.duration = d
		s.setGuestMode(vm, m)
	}
	mode := vm.sim.guest.mode
	if mode == "" {
		mode = "normal"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(GuestMode{VM: vm.str("uuid"), Mode: mode, Duration: Duration(vm.sim.guest.duration)})
}
