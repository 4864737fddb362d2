package xenapi

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint is how to reach and authenticate to a XenServer pool.
type Endpoint struct {
	// URL of the host's XenAPI endpoint, e.g. https://xenserver-01.example.com.
	// A pool member's URL works: the client follows HOST_IS_SLAVE to the
	// coordinator.
	URL string
	// Name labels the endpoint in metrics and logs; the operator passes the
	// XenHost's namespace/name. Defaults to the URL's scheme, host and port.
	Name     string
	Username string
	Password string
	// CABundle holds PEM certificates trusted for the endpoint, besides the
	// system's.
	CABundle []byte
	// InsecureSkipVerify turns certificate verification off.
	InsecureSkipVerify bool
	// MaxConcurrentMutations overrides the pool's cap on operations in
	// flight for this endpoint (0 keeps it).
	MaxConcurrentMutations int
}

// Options configure a Sessions cache. Zero values take the defaults noted.
type Options struct {
	// Originator is sent to xapi with every login, so that xapi counts the
	// operator's sessions apart from other tools' (default "xen-operator").
	Originator string
	// MaxConcurrentMutations caps the operations in flight per endpoint
	// (default 16).
	MaxConcurrentMutations int
	// LoginBackoff is the wait after a failed login, doubling up to
	// MaxLoginBackoff (defaults 2s and 5m). Callers in the meantime get the
	// last login error without a new attempt.
	LoginBackoff, MaxLoginBackoff time.Duration
	// CallTimeout bounds a call whose context has no deadline (default 10m:
	// a VM operation can take minutes).
	CallTimeout time.Duration
	// DialTimeout and TLSHandshakeTimeout bound connection set-up (default 10s).
	DialTimeout, TLSHandshakeTimeout time.Duration
	// EventTimeout is how long one event.from call waits (default 30s).
	EventTimeout time.Duration
	// TaskPollInterval is how often a task is polled when no event arrives
	// (default 5s).
	TaskPollInterval time.Duration
	// Registerer receives the client's metrics (for the operator:
	// controller-runtime's registry). Nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives the client's log lines.
	Logger logr.Logger
}

func (o *Options) defaults() {
	if o.Originator == "" {
		o.Originator = "xen-operator"
	}
	if o.MaxConcurrentMutations <= 0 {
		o.MaxConcurrentMutations = 16
	}
	if o.LoginBackoff <= 0 {
		o.LoginBackoff = 2 * time.Second
	}
	if o.MaxLoginBackoff <= 0 {
		o.MaxLoginBackoff = 5 * time.Minute
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Minute
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 10 * time.Second
	}
	if o.EventTimeout <= 0 {
		o.EventTimeout = 30 * time.Second
	}
	if o.TaskPollInterval <= 0 {
		o.TaskPollInterval = 5 * time.Second
	}
}

// key identifies a shared session: endpoint, user, and hashes of the
// password and TLS settings (never the password itself).
type key struct {
	url, username, secret string
}

func keyOf(ep Endpoint) key {
	h := sha256.New()
	h.Write([]byte(ep.Password))
	h.Write([]byte{0})
	h.Write(ep.CABundle)
	_, _ = fmt.Fprintf(h, "\x00%t\x00%d", ep.InsecureSkipVerify, ep.MaxConcurrentMutations)
	return key{url: ep.URL, username: ep.Username, secret: hex.EncodeToString(h.Sum(nil))}
}

// Sessions shares one XenAPI session per endpoint and credentials across the
// whole process. Owners (for the operator: XenHosts) acquire the client of
// their endpoint; when an owner's credentials change or it is released, a
// session no owner uses any more is logged out.
type Sessions struct {
	opts    Options
	metrics *metrics

	mu      sync.Mutex
	clients map[key]*Client
	owners  map[string]key
	closed  bool
}

// NewSessions creates an empty session cache.
func NewSessions(opts Options) *Sessions {
	opts.defaults()
	return &Sessions{opts: opts, metrics: newMetrics(opts.Registerer), clients: map[key]*Client{}, owners: map[string]key{}}
}

// Client returns the shared client for ep on behalf of owner. It does not
// log in: the first call does. If owner used other credentials before, its
// old session is logged out once no owner uses it.
func (p *Sessions) Client(owner string, ep Endpoint) (*Client, error) {
	u, err := url.Parse(ep.URL)
	if err != nil || ep.URL == "" || u.Host == "" {
		return nil, fmt.Errorf("xenapi: bad endpoint URL %q", siteOf(ep.URL))
	}
	if u.User != nil {
		return nil, fmt.Errorf("xenapi: the endpoint URL %s must not carry credentials", siteOf(ep.URL))
	}
	k := keyOf(ep)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	var orphan *Client
	if old, ok := p.owners[owner]; ok && old != k {
		orphan = p.dropOwnerLocked(owner)
	}
	c, ok := p.clients[k]
	if !ok {
		var err error
		if c, err = newClient(p, k, ep); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		p.clients[k] = c
	}
	p.owners[owner] = k
	p.mu.Unlock()
	if orphan != nil {
		orphan.close(context.Background())
	}
	return c, nil
}

// Release forgets owner; its session is logged out if no other owner uses it.
func (p *Sessions) Release(ctx context.Context, owner string) {
	p.mu.Lock()
	orphan := p.dropOwnerLocked(owner)
	p.mu.Unlock()
	if orphan != nil {
		orphan.close(ctx)
	}
}

// dropOwnerLocked removes owner and returns its client if nobody else uses it.
func (p *Sessions) dropOwnerLocked(owner string) *Client {
	k, ok := p.owners[owner]
	if !ok {
		return nil
	}
	delete(p.owners, owner)
	for _, other := range p.owners {
		if other == k {
			return nil
		}
	}
	c := p.clients[k]
	delete(p.clients, k)
	return c
}

// Close logs every session out; the pool cannot be used afterwards.
func (p *Sessions) Close(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	clients := make([]*Client, 0, len(p.clients))
	for _, c := range p.clients {
		clients = append(clients, c)
	}
	p.clients, p.owners = map[key]*Client{}, map[string]key{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.close(ctx)
		}()
	}
	wg.Wait()
}

// Client is the shared connection to one endpoint with one set of
// credentials: one session, re-established when xapi invalidates it.
type Client struct {
	sessions *Sessions
	key      key
	ep       Endpoint
	rpc      *rpc
	log      logr.Logger
	slots    *slots

	mu sync.Mutex
	// url is where calls go: the endpoint, or the coordinator it redirected to.
	url     string
	session string
	flight  *loginFlight
	logins  int
	// After a failed login, callers get loginErr until retryAt.
	loginErr error
	retryAt  time.Time
	backoff  time.Duration
	closed   bool
	watcher  *watcher
}

type loginFlight struct {
	done chan struct{}
	err  error
}

func newClient(p *Sessions, k key, ep Endpoint) (*Client, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: ep.InsecureSkipVerify} //nolint:gosec // only when the user asks
	if len(ep.CABundle) > 0 {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(ep.CABundle) {
			return nil, errors.New("xenapi: the CA bundle holds no PEM certificate")
		}
		tlsConfig.RootCAs = roots
	}
	dialer := &net.Dialer{Timeout: p.opts.DialTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: p.opts.TLSHandshakeTimeout,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	return &Client{
		sessions: p,
		key:      k,
		ep:       ep,
		rpc:      &rpc{http: &http.Client{Transport: transport}, metrics: p.metrics, endpoint: siteOf(ep.URL), label: labelOf(ep)},
		log:      p.opts.Logger.WithValues("endpoint", siteOf(ep.URL)),
		slots:    newSlots(cmp.Or(ep.MaxConcurrentMutations, p.opts.MaxConcurrentMutations)),
		url:      ep.URL,
	}, nil
}

// Coordinator is the URL calls go to: the endpoint, or the pool coordinator
// it redirected to.
func (c *Client) Coordinator() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url
}

// Endpoint is the URL the client was created for.
func (c *Client) Endpoint() string { return c.ep.URL }

// siteOf is a URL reduced to its scheme, host and port: what errors, logs
// and metrics show of an endpoint, never credentials, a path or a query.
func siteOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}

// labelOf is the metrics label of an endpoint: its Name, else its site.
func labelOf(ep Endpoint) string {
	if ep.Name != "" {
		return ep.Name
	}
	return siteOf(ep.URL)
}

// Logins counts the logins this client made.
func (c *Client) Logins() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logins
}

// sessionRef returns a valid session ref and the URL to use it on, logging
// in when there is none or when the caller saw stale rejected. Concurrent
// callers share one login.
func (c *Client) sessionRef(ctx context.Context, stale string) (string, string, error) {
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return "", "", ErrClosed
		}
		if c.session != "" && c.session != stale {
			ref, u := c.session, c.url
			c.mu.Unlock()
			return ref, u, nil
		}
		if c.session == stale {
			c.session = ""
		}
		if f := c.flight; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", "", ctx.Err()
			}
			if f.err != nil {
				return "", "", f.err
			}
			c.mu.Lock()
			continue
		}
		if wait := time.Until(c.retryAt); wait > 0 && c.loginErr != nil {
			err := fmt.Errorf("%w (next login attempt in %s)", c.loginErr, wait.Round(time.Second))
			c.mu.Unlock()
			return "", "", err
		}
		f := &loginFlight{done: make(chan struct{})}
		c.flight = f
		relogin := c.logins > 0
		start := c.url
		c.mu.Unlock()

		// The login must not fail because one caller's context ended: it
		// serves everyone waiting.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.sessions.opts.DialTimeout+c.sessions.opts.TLSHandshakeTimeout+30*time.Second)
		ref, u, err := c.login(lctx, start)
		cancel()

		kind := "login"
		if relogin {
			kind = "relogin"
		}
		code := "SUCCESS"
		if err != nil {
			code = codeOf(err)
			if code == "" {
				code = "CONNECTION"
			}
		}
		c.sessions.metrics.logins.WithLabelValues(c.rpc.label, kind, code).Inc()

		c.mu.Lock()
		c.flight = nil
		f.err = err
		if err != nil {
			if c.backoff == 0 {
				c.backoff = c.sessions.opts.LoginBackoff
			} else {
				c.backoff = min(2*c.backoff, c.sessions.opts.MaxLoginBackoff)
			}
			c.loginErr, c.retryAt = err, time.Now().Add(c.backoff)
			c.log.Info("XenAPI login failed", "error", err.Error(), "retryIn", c.backoff.String())
		} else {
			c.session, c.url, c.logins = ref, u, c.logins+1
			c.loginErr, c.retryAt, c.backoff = nil, time.Time{}, 0
			c.sessions.metrics.sessions.WithLabelValues(c.rpc.label).Set(1)
			if c.closed {
				// Closed while logging in: do not leave the session behind.
				go c.logout(context.WithoutCancel(ctx), ref, u)
				c.session = ""
			}
			c.log.V(1).Info("Logged in to XenAPI", "coordinator", u, "relogin", relogin)
		}
		close(f.done)
	}
}

// login logs in at u, following HOST_IS_SLAVE to the coordinator.
func (c *Client) login(ctx context.Context, u string) (string, string, error) {
	for range 3 {
		ref, err := call[string](ctx, c.rpc, u, "session.login_with_password",
			c.ep.Username, c.ep.Password, "1.0", c.sessions.opts.Originator)
		if err == nil {
			return ref, u, nil
		}
		if !IsHostIsSlave(err) {
			return "", "", err
		}
		next, rerr := redirect(u, err)
		if rerr != nil {
			return "", "", rerr
		}
		c.log.Info("Following the pool coordinator", "from", u, "to", next)
		u = next
	}
	return "", "", fmt.Errorf("xenapi: too many HOST_IS_SLAVE redirects from %s", c.rpc.endpoint)
}

// redirect is u with its host replaced by the coordinator address that a
// HOST_IS_SLAVE error names (same scheme and port).
func redirect(u string, err error) (string, error) {
	xe, _ := AsError(err)
	master := xe.Param(0)
	parsed, perr := url.Parse(u)
	if perr != nil || master == "" {
		return "", fmt.Errorf("xenapi: cannot follow HOST_IS_SLAVE [%s] from %s", master, u)
	}
	if port := parsed.Port(); port != "" {
		parsed.Host = net.JoinHostPort(master, port)
	} else {
		parsed.Host = master
	}
	return parsed.String(), nil
}

func (c *Client) logout(ctx context.Context, ref, u string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := call[string](ctx, c.rpc, u, "session.logout", ref); err != nil && !IsSessionInvalid(err) {
		c.log.Info("XenAPI logout failed", "error", err.Error())
	}
}

// close stops the watcher and logs the session out.
func (c *Client) close(ctx context.Context) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	ref, u, w := c.session, c.url, c.watcher
	c.session = ""
	c.mu.Unlock()
	if w != nil {
		w.stop()
	}
	if ref != "" {
		c.logout(ctx, ref, u)
	}
	c.sessions.metrics.forget(c.rpc.label)
	c.rpc.http.CloseIdleConnections()
}

// withTimeout applies the default call timeout to a context without a deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.sessions.opts.CallTimeout)
}

// Capacity is the most operations the client runs at once on its endpoint.
func (c *Client) Capacity() int { return c.slots.capacity }

// Saturated tells whether enough callers already wait to bring new VMs in:
// another one may come back later rather than wait.
func (c *Client) Saturated() bool { return c.slots.saturated() }

// acquire takes an operation slot.
func (c *Client) acquire(ctx context.Context) error { return c.slots.acquire(ctx, false) }

func (c *Client) release() { c.slots.release() }

// do calls method with the session, re-logging in once on SESSION_INVALID
// and following a changed coordinator on HOST_IS_SLAVE.
func do[T any](ctx context.Context, c *Client, method string, args ...any) (T, error) {
	var v T
	if err := doWith(ctx, c, method, valueInto(&v), args...); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// doWith is do with value decoding the response's Value.
func doWith(ctx context.Context, c *Client, method string, value func(*scanner) error, args ...any) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	stale := ""
	for attempt := 0; ; attempt++ {
		ref, u, err := c.sessionRef(ctx, stale)
		if err != nil {
			return err
		}
		err = callWith(ctx, c.rpc, u, method, value, append([]any{ref}, args...)...)
		if err == nil || attempt >= 2 {
			return err
		}
		switch {
		case IsSessionInvalid(err):
			stale = ref
		case IsHostIsSlave(err):
			// The pool elected another coordinator: go there and log in again.
			next, rerr := redirect(u, err)
			if rerr != nil {
				return err
			}
			c.mu.Lock()
			c.url = next
			c.mu.Unlock()
			stale = ref
		default:
			return err
		}
	}
}

// mutate is do for a call that changes something: it takes one of the
// endpoint's operation slots for the call's duration.
func mutate[T any](ctx context.Context, c *Client, method string, args ...any) (T, error) {
	return mutateAt[T](ctx, c, false, method, args...)
}

// mutateAt is mutate with a priority: low for calls that bring new VMs in
// (clones), which wait behind operations on VMs already on their way.
func mutateAt[T any](ctx context.Context, c *Client, low bool, method string, args ...any) (T, error) {
	var zero T
	if err := c.slots.acquire(ctx, low); err != nil {
		return zero, err
	}
	defer c.slots.release()
	return do[T](ctx, c, method, args...)
}
