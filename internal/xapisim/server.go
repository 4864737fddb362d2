// Package xapisim is a XenAPI (xapi) simulator: a real HTTP server speaking
// xapi's XML-RPC and JSON-RPC wire formats over a small in-memory pool, with
// xapi's power-state rules, error codes, sessions, tasks and events. The
// operator's tests, the demo and the benchmarks run against it.
package xapisim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a simulated pool. Zero values take the defaults noted.
type Config struct {
	// Hosts is the number of hosts in the pool (default 1). Host i listens on
	// 127.0.0.<i+1>; the first is the coordinator.
	Hosts int
	// Port all hosts listen on; 0 picks a free one.
	Port int
	// Username and Password are the only valid credentials (default root / xenserver).
	Username, Password string
	// AuthFailureDelay delays a failed login, as xapi's fixed 5 s sleep does.
	AuthFailureDelay time.Duration
	// GCInterval is how often the database GC pass runs, collecting tasks
	// and sessions (default 30 s, xapi's db_GC_TIMER).
	GCInterval time.Duration
	// MaxSessions caps anonymous sessions (originator "" and user root),
	// MaxSessionsPerOriginator other root sessions per originator, and
	// MaxSessionsPerUserName other users' sessions per name; the GC pass
	// destroys the least recently active beyond them (defaults 400, 500 and
	// 500, as xapi's).
	MaxSessions, MaxSessionsPerOriginator, MaxSessionsPerUserName int
	// InactiveSessionTimeout is how long a session may go unused before the
	// GC pass destroys it (default 24 h); LastActiveThreshold is how old a
	// session's last_active must be before a call moves it (default 600 s).
	InactiveSessionTimeout, LastActiveThreshold time.Duration
	// CompletedTaskTimeout and PendingTaskTimeout are the ages at which the
	// GC pass destroys completed tasks (default 65 min) and pending tasks
	// that no longer progress (default 24 h).
	CompletedTaskTimeout, PendingTaskTimeout time.Duration
	// Latency and Jitter delay every call by Latency plus up to Jitter.
	Latency, Jitter time.Duration
	// OpDuration is how long a VM or host operation takes (default 0);
	// OpDurations overrides it per operation (clone, provision, start,
	// clean_shutdown, hard_shutdown, suspend, resume, ...).
	OpDuration  time.Duration
	OpDurations map[string]time.Duration
	// BootDelay is the time from start to the guest agent reporting.
	BootDelay time.Duration
	// FailureRate is the probability (0..1) that a mutating call fails with
	// a realistic error.
	FailureRate float64
	// ResponseLossRate is the probability (0..1) that the answer to a
	// mutating call is lost: the call runs, then the connection closes
	// without a reply, as when a network or a proxy drops it.
	ResponseLossRate float64
	// HostMemory is each host's memory in bytes (default 1 TiB).
	HostMemory int64
	// TLS serves HTTPS with a self-signed certificate; its CA is written to
	// CAFile.
	TLS    bool
	CAFile string
}

func (c *Config) defaults() {
	if c.Hosts <= 0 {
		c.Hosts = 1
	}
	if c.Username == "" {
		c.Username = "root"
	}
	if c.Password == "" {
		c.Password = "xenserver"
	}
	if c.HostMemory <= 0 {
		c.HostMemory = 1 << 40
	}
	c.gcDefaults()
}

// gcDefaults fills in the database GC settings left at zero.
func (c *Config) gcDefaults() {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.GCInterval, defaultGCInterval}, {&c.InactiveSessionTimeout, defaultInactiveSessionTimeout},
		{&c.LastActiveThreshold, defaultLastActiveThreshold}, {&c.CompletedTaskTimeout, defaultCompletedTaskTimeout},
		{&c.PendingTaskTimeout, defaultPendingTaskTimeout},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		v   *int
		def int
	}{
		{&c.MaxSessions, defaultMaxSessions}, {&c.MaxSessionsPerOriginator, defaultMaxSessionsPerOriginator},
		{&c.MaxSessionsPerUserName, defaultMaxSessionsPerUserName},
	} {
		if *n.v <= 0 {
			*n.v = n.def
		}
	}
}

// Stats are the counters served on GET /sim/stats.
type Stats struct {
	SessionsActive int   `json:"sessions_active"`
	SessionsPeak   int   `json:"sessions_peak"`
	LoginsTotal    int64 `json:"logins_total"`
	LoginsFailed   int64 `json:"logins_failed"`
	LogoutsTotal   int64 `json:"logouts_total"`
	// Evictions counts sessions the GC pass destroyed for a group's cap,
	// SessionsExpired those it destroyed for inactivity.
	Evictions       int64          `json:"sessions_evicted"`
	SessionsExpired int64          `json:"sessions_expired"`
	Calls           map[string]int `json:"calls"`
	CallsTotal      int64          `json:"calls_total"`
	VMs             map[string]int `json:"vms"`
	TasksActive     int            `json:"tasks_active"`
	// LoginsByOriginator and SessionsPeakByOriginator break logins and the
	// most sessions open at once down by session originator.
	LoginsByOriginator       map[string]int64 `json:"logins_by_originator"`
	SessionsPeakByOriginator map[string]int   `json:"sessions_peak_by_originator"`
	// OperationsInFlight and OperationsPeak count VM and host operations
	// running now and at most at once.
	OperationsInFlight int `json:"operations_in_flight"`
	OperationsPeak     int `json:"operations_peak"`
	// FailuresInjected counts the calls failed by FailureRate.
	FailuresInjected int64 `json:"failures_injected"`
	// ResponsesLost counts, per method, the calls that ran but whose answer
	// was lost (ResponseLossRate).
	ResponsesLost map[string]int `json:"responses_lost"`
}

// Server is a running simulated pool.
type Server struct {
	mu    sync.Mutex
	cfg   Config
	db    *store
	pool  *object
	hosts []*simHost
	rng   *rand.Rand

	stats Stats
	// openByOriginator counts open sessions per originator.
	openByOriginator map[string]int
	// probation is the progress of old pending tasks at the last GC pass.
	probation map[string]float64
	// gcReset restarts the GC timer when its interval changes.
	gcReset chan struct{}
	// nextDomid and nextIP number domains and guest IP addresses.
	nextDomid, nextIP int64

	tlsConfig *tls.Config
	scheme    string
	port      int

	refusing atomic.Bool
	// epoch counts xapi's restarts: a call under way when xapi restarts
	// dies with the process.
	epoch  uint64
	closed chan struct{}
	wg     sync.WaitGroup
}

// simHost is one host of the pool with its own listener.
type simHost struct {
	obj   *object
	ip    string
	srv   *http.Server
	ln    net.Listener
	conns sync.Map // net.Conn -> struct{}
}

// New creates a pool and starts serving it on loopback.
func New(cfg Config) (*Server, error) {
	cfg.defaults()
	s := &Server{
		cfg:              cfg,
		db:               newStore(),
		rng:              rand.New(rand.NewSource(time.Now().UnixNano())), //nolint:gosec // simulation, not security
		closed:           make(chan struct{}),
		scheme:           "http",
		openByOriginator: map[string]int{},
		gcReset:          make(chan struct{}, 1),
	}
	s.stats.Calls = map[string]int{}
	s.stats.LoginsByOriginator = map[string]int64{}
	s.stats.SessionsPeakByOriginator = map[string]int{}
	s.stats.ResponsesLost = map[string]int{}
	if cfg.TLS {
		tc, err := selfSignedTLS(cfg.Hosts, cfg.CAFile)
		if err != nil {
			return nil, err
		}
		s.tlsConfig, s.scheme = tc, "https"
	}
	s.mu.Lock()
	s.buildPool()
	s.db.notify()
	s.mu.Unlock()
	if err := s.listen(); err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.runGC()
	return s, nil
}

// listen binds every host on its loopback address and the same port.
func (s *Server) listen() error {
	port := s.cfg.Port
	for attempt := 0; ; attempt++ {
		var lns []net.Listener
		var err error
		for i, h := range s.hosts {
			var ln net.Listener
			ln, err = net.Listen("tcp", net.JoinHostPort(h.ip, fmt.Sprint(port)))
			if err != nil {
				break
			}
			if i == 0 && port == 0 {
				port = ln.Addr().(*net.TCPAddr).Port
			}
			lns = append(lns, ln)
		}
		if err == nil {
			for i, h := range s.hosts {
				s.serve(h, lns[i])
			}
			s.port = port
			return nil
		}
		for _, ln := range lns {
			_ = ln.Close()
		}
		if s.cfg.Port != 0 || attempt > 20 {
			return fmt.Errorf("listening: %w", err)
		}
		port = 0
	}
}

func (s *Server) serve(h *simHost, ln net.Listener) {
	if s.tlsConfig != nil {
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	h.ln = ln
	if h.srv == nil {
		h.srv = &http.Server{
			Handler:           s.handler(h),
			ReadHeaderTimeout: 30 * time.Second,
			ConnState: func(c net.Conn, st http.ConnState) {
				switch st {
				case http.StateNew:
					h.conns.Store(c, struct{}{})
				case http.StateClosed, http.StateHijacked:
					h.conns.Delete(c)
				}
			},
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = h.srv.Serve(ln)
	}()
}

// URLs are the XenAPI endpoints of the hosts, coordinator first.
func (s *Server) URLs() []string {
	out := make([]string, len(s.hosts))
	for i, h := range s.hosts {
		out[i] = s.urlOf(h)
	}
	return out
}

// URL is the coordinator's XenAPI endpoint.
func (s *Server) URL() string { return s.URLs()[0] }

func (s *Server) urlOf(h *simHost) string {
	return fmt.Sprintf("%s://%s", s.scheme, net.JoinHostPort(h.ip, fmt.Sprint(s.port)))
}

// Close stops serving and waits for background work.
func (s *Server) Close() {
	select {
	case <-s.closed:
		return
	default:
	}
	close(s.closed)
	for _, h := range s.hosts {
		if h.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = h.srv.Shutdown(ctx)
			cancel()
			_ = h.srv.Close()
		}
	}
	s.mu.Lock()
	// Wake long polls so that they return.
	s.db.dirty = true
	s.db.notify()
	s.mu.Unlock()
	s.wg.Wait()
}

// unlock publishes changes to event.from waiters and releases the lock.
func (s *Server) unlock() {
	s.db.notify()
	s.mu.Unlock()
}

// opDuration is how long op takes.
func (s *Server) opDuration(op string) time.Duration {
	if d, ok := s.cfg.OpDurations[op]; ok {
		return d
	}
	return s.cfg.OpDuration
}

// sleep waits for d unless the server closes first.
func (s *Server) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closed:
		return false
	}
}

// ---- HTTP ------------------------------------------------------------------

const maxBody = 64 << 20

func (s *Server) handler(h *simHost) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/sim/", s.handleSim)
	mux.HandleFunc("/jsonrpc", func(w http.ResponseWriter, r *http.Request) {
		body, ok := postBody(w, r)
		if !ok {
			return
		}
		call, err := parseJSONCall(body)
		if err != nil {
			internalError(w, err)
			return
		}
		value, fail, _ := s.call(r.Context(), h, call.Method, call.Params)
		if s.loseResponse(w, call.Method, fail) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(jsonResponse(call, value, fail))
	})
	// XML-RPC on / and every path no other route claims (/RPC2, /xmlrpc, ...).
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := postBody(w, r)
		if !ok {
			return
		}
		call, err := parseXMLCall(body)
		if err != nil {
			internalError(w, err)
			return
		}
		value, fail, bare := s.call(r.Context(), h, call.method, call.params)
		if s.loseResponse(w, call.method, fail) {
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if bare {
			_, _ = w.Write(xmlBareResponse(value))
			return
		}
		_, _ = w.Write(xmlResponse(value, fail))
	})
	mux.Handle("/", root)
	// The raw VDI transfers (xapi.ml: put_import_raw_vdi, get_export_raw_vdi),
	// matched by prefix as xapi's radix tree does.
	imp := s.rawHandler(h, http.MethodPut, realmImport, "Importing raw VDI", s.serveImport, root)
	exp := s.rawHandler(h, http.MethodGet, realmExport, "Exporting raw VDI", s.serveExport, root)
	for _, p := range []string{"/import_raw_vdi", "/import_raw_vdi/"} {
		mux.Handle(p, imp)
	}
	for _, p := range []string{"/export_raw_vdi", "/export_raw_vdi/"} {
		mux.Handle(p, exp)
	}
	return mux
}

// postBody reads a call's body; XenAPI calls are POSTs.
func postBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	return body, err == nil
}

// internalError answers a malformed request as xapi does: HTTP 500 with HTML.
func internalError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = fmt.Fprintf(w, "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and try again. If the problem persists, please contact your support representative.<h1> Additional information </h1>%s</body></html>",
		strings.ReplaceAll(err.Error(), "<", "&lt;"))
}

// ---- dispatch --------------------------------------------------------------

// callCtx is one XenAPI call being served.
type callCtx struct {
	s       *Server
	ctx     context.Context
	via     *simHost // the host the call came to
	wire    string   // the name as called, e.g. "Async.VM.start"
	session *object
	args    []any // converted arguments, session excluded
	task    *object
	async   bool
	// transient marks a task created for a synchronous call, destroyed when
	// the call returns.
	transient bool
}

func (c *callCtx) str(i int) string { return c.args[i].(string) }
func (c *callCtx) bool(i int) bool  { return c.args[i].(bool) }
func (c *callCtx) int(i int) int64  { return c.args[i].(int64) }

// call serves one XenAPI call: arity, parameter unmarshalling, session check,
// then the implementation, in xapi's order.
func (s *Server) call(ctx context.Context, h *simHost, name string, raw []any) (any, *Failure, bool) {
	s.mu.Lock()
	s.stats.Calls[name]++
	s.stats.CallsTotal++
	epoch := s.epoch
	latency := s.cfg.Latency
	if s.cfg.Jitter > 0 {
		latency += time.Duration(s.rng.Int63n(int64(s.cfg.Jitter)))
	}
	s.mu.Unlock()
	if !s.sleep(latency) {
		return nil, newFailure(errInternalError, "xapi is shutting down"), false
	}

	if name == "system.listMethods" {
		return listMethods(), nil, true
	}

	wire, async := strings.CutPrefix(name, "Async.")
	m := lookupMethod(wire, !async)
	if m == nil {
		return nil, s.unknownMethod(name, raw), false
	}
	if async && !m.async && !m.removed {
		return nil, newFailure("Fault", fmt.Sprintf("No async mode for this operation (rpc: %s)", wire)), false
	}

	// Arity, counted without the session parameter.
	want := len(m.params)
	got := len(raw)
	if m.session {
		got--
	}
	if got < m.minArgs || got > want {
		return nil, newFailure(errMessageParameterCountMismatch, name, fmt.Sprint(want), fmt.Sprint(max(got, 0))), false
	}

	// Unmarshal.
	c := &callCtx{s: s, ctx: ctx, via: h, wire: name, async: async}
	first := 0
	if m.session {
		first = 1
	}
	for i, p := range m.params {
		if m.removed {
			break // only the session is read (gen_server.ml)
		}
		if first+i >= len(raw) {
			c.args = append(c.args, m.defaults[i])
			continue
		}
		v, err := convert(p.typ, raw[first+i])
		if err != nil {
			return nil, asFailure(err), false
		}
		c.args = append(c.args, v)
	}
	var sessionRef string
	if m.session {
		var ok bool
		if sessionRef, ok = raw[0].(string); !ok {
			return nil, asFailure(typeError(mustParseType("session ref"), raw[0])), false
		}
	}

	s.mu.Lock()
	if s.epoch != epoch {
		// xapi restarted since the call came in: it died with the process.
		s.unlock()
		return nil, errRestarted, false
	}
	// Session check.
	if m.session {
		if h != s.hosts[0] {
			s.unlock()
			return nil, newFailure(errHostIsSlave, s.hosts[0].ip), false
		}
		sess, ok := s.db.get("session", sessionRef)
		if !ok {
			s.unlock()
			return nil, newFailure(errSessionInvalid, sessionRef), false
		}
		s.touchSession(sess)
		c.session = sess
	}
	if m.removed {
		s.unlock()
		return nil, newFailure(errMessageRemoved), false
	}
	if m.mutating && s.cfg.FailureRate > 0 && s.rng.Float64() < s.cfg.FailureRate {
		f := injectedFailure(m, c)
		s.stats.FailuresInjected++
		s.unlock()
		return nil, f, false
	}

	if async {
		task := s.newTask(name, c.session)
		c.task = task
		s.wg.Add(1)
		go s.runAsync(m, c)
		s.unlock()
		return task.ref, nil, false
	}
	value, err := m.handler(c)
	if c.transient {
		s.db.destroy(c.task)
	}
	s.unlock()
	if err != nil {
		return nil, asFailure(err), false
	}
	if m.result.kind == kVoid {
		value = ""
	}
	return value, nil, false
}

func asFailure(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return newFailure(errInternalError, err.Error())
}

// unknownMethod fails as xapi does for a method it does not know.
func (s *Server) unknownMethod(name string, raw []any) *Failure {
	plain := strings.TrimPrefix(name, "Async.")
	if len(raw) == 0 {
		return newFailure(errMessageMethodUnknown, name)
	}
	ref, _ := raw[0].(string)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.db.get("session", ref); !ok {
		return newFailure(errSessionInvalid, ref)
	}
	return newFailure(errMessageMethodUnknown, plain)
}

// injectedFailure picks a realistic error for a failure injected into m.
func injectedFailure(m *method, c *callCtx) *Failure {
	switch {
	case m.class == "VM" && len(c.args) > 0:
		if m.name == "start" || m.name == "start_on" || m.name == "resume" {
			return newFailure(errHostNotEnoughFreeMemory, "4294967296", "1073741824")
		}
		return newFailure(errSRBackendFailure, "", "The SR backend failed (injected by xapi-simulator)", "")
	default:
		return newFailure(errInternalError, "Injected failure (xapi-simulator --failure-rate)")
	}
}

// Stats returns the simulator's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Calls = maps.Clone(s.stats.Calls)
	st.LoginsByOriginator = maps.Clone(s.stats.LoginsByOriginator)
	st.SessionsPeakByOriginator = maps.Clone(s.stats.SessionsPeakByOriginator)
	st.ResponsesLost = maps.Clone(s.stats.ResponsesLost)
	st.SessionsActive = len(s.db.objects["session"])
	st.VMs = map[string]int{}
	for _, vm := range s.db.objects["VM"] {
		if vm.bool("is_a_template") || vm.bool("is_control_domain") {
			continue
		}
		st.VMs[vm.str("power_state")]++
	}
	for _, t := range s.db.objects["task"] {
		if t.str("status") == "pending" {
			st.TasksActive++
		}
	}
	return st
}
