package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// connectError is a failure to connect a XenHost, with the condition reason
// it is reported under.
type connectError struct {
	reason string
	err    error
}

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// reasonFor maps a connection or XenAPI error to a condition reason.
func reasonFor(err error) string {
	var ce *connectError
	if errors.As(err, &ce) {
		return ce.reason
	}
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var rhe tls.RecordHeaderError
	switch {
	case xenapi.IsAuthenticationFailed(err):
		return virtv1alpha1.ReasonAuthenticationFailed
	case errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &cie), errors.As(err, &rhe),
		xenapi.IsConnectionError(err) && (strings.Contains(err.Error(), "certificate") ||
			strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")):
		return virtv1alpha1.ReasonTLSError
	case xenapi.IsConnectionError(err), errors.Is(err, xenapi.ErrClosed):
		return virtv1alpha1.ReasonUnreachable
	default:
		return virtv1alpha1.ReasonXenAPIError
	}
}

// Conn is a connected XenHost's pool: its shared client, the cache its
// event stream feeds, and the service the reconcilers change it through.
type Conn struct {
	Client  *xenapi.Client
	Cache   *cache.Cache
	Service vmservice.Service
	// Observers are the VMs XenVMs observe without tagging them.
	Observers *vmservice.Observers
}

// Healthy tells whether the connection can be used: the cache synced and
// the event stream works. It makes no call.
func (c *Conn) Healthy() error {
	if err := c.Client.WatchHealth(); err != nil {
		return err
	}
	if !c.Cache.HasSynced() {
		return errNotSynced
	}
	return nil
}

// errNotSynced: the event stream answers, its first full sync is not applied yet.
var errNotSynced = errors.New("the pool's cache has not synced yet")

// Connections is the registry of connected XenHosts: the XenHost controller
// connects them; the XenVM controller only looks them up, so that a XenVM
// never waits for a pool nor reads credentials.
type Connections struct {
	Sessions *xenapi.Sessions
	// Secrets reads the XenHosts' Secrets (and the XenVMs' cloudInit ones)
	// from the API server, once per version: no Secret's data is cached in
	// an informer (a metadata-only watch wakes the XenHosts).
	Secrets *SecretReader
	// MaxConcurrentOperations is the default cap on operations per pool.
	MaxConcurrentOperations int

	// VMEvents receives the XenVMs whose XenServer objects changed, and
	// HostEvents the XenHosts whose pool changed; the controllers watch them.
	// PoolEvents receives the XenHosts whose XenVMs are all to be looked at
	// again (the cache synced, the pool's default SR changed).
	VMEvents   chan event.GenericEvent
	HostEvents chan event.GenericEvent
	PoolEvents chan event.GenericEvent
	// SnapshotEvents receives the XenVMSnapshots whose snapshots changed.
	SnapshotEvents chan event.GenericEvent

	mu     sync.Mutex
	byHost map[types.NamespacedName]*Conn
	// conns holds one Conn per shared client, and the XenHosts using it.
	conns map[*xenapi.Client]*sharedConn
}

type sharedConn struct {
	conn  *Conn
	hosts map[types.NamespacedName]struct{}
}

// NewConnections creates the registry of a manager; secrets reads the
// credentials and CA Secrets.
func NewConnections(sessions *xenapi.Sessions, secrets *SecretReader, maxOps int) *Connections {
	return &Connections{
		Sessions: sessions, Secrets: secrets, MaxConcurrentOperations: maxOps,
		VMEvents:       make(chan event.GenericEvent, 1024),
		HostEvents:     make(chan event.GenericEvent, 64),
		PoolEvents:     make(chan event.GenericEvent, 64),
		SnapshotEvents: make(chan event.GenericEvent, 256),
		byHost:         map[types.NamespacedName]*Conn{},
		conns:          map[*xenapi.Client]*sharedConn{},
	}
}

func keyOf(o metav1.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// Get returns the connection of a XenHost, if its controller connected it.
func (c *Connections) Get(host types.NamespacedName) (*Conn, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, ok := c.byHost[host]
	return conn, ok
}

// Connect returns the connection of a XenHost, creating its client (one
// session per endpoint and credentials) and cache if needed. It makes no
// XenAPI call itself: the first call logs in.
func (c *Connections) Connect(ctx context.Context, host *virtv1alpha1.XenHost) (*Conn, error) {
	ep, err := c.endpointFor(ctx, host)
	if err != nil {
		return nil, err
	}
	key := keyOf(host)
	xc, err := c.Sessions.Client(key.String(), ep)
	if err != nil {
		return nil, &connectError{reason: virtv1alpha1.ReasonTLSError, err: err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	shared, ok := c.conns[xc]
	if !ok {
		sub, err := xc.Subscribe()
		if err != nil {
			return nil, err
		}
		shared = &sharedConn{hosts: map[types.NamespacedName]struct{}{}}
		shared.conn = c.newConn(xc, shared)
		c.conns[xc] = shared
		go func() {
			shared.conn.Cache.Run(sub.Events())
			c.forget(xc)
		}()
	}
	if old := c.byHost[key]; old != nil && old != shared.conn {
		// The XenHost's address or credentials changed.
		if s := c.conns[old.Client]; s != nil {
			delete(s.hosts, key)
		}
	}
	shared.hosts[key] = struct{}{}
	c.byHost[key] = shared.conn
	return shared.conn, nil
}

// newConn builds the cache and service of a new client: the cache wakes
// the XenVMs whose VMs change, and the XenHosts (and all their XenVMs) when
// the pool changes.
func (c *Connections) newConn(xc *xenapi.Client, shared *sharedConn) *Conn {
	observers := &vmservice.Observers{}
	opts := vmservice.CacheOptions(func(owner string) {
		if snap, ok := strings.CutPrefix(owner, vmservice.SnapshotWakePrefix); ok {
			if ns, name, ok := strings.Cut(snap, "/"); ok {
				c.SnapshotEvents <- wake(ns, name)
			}
			return
		}
		if host, ok := strings.CutPrefix(owner, hostWakePrefix); ok {
			if ns, name, ok := strings.Cut(host, "/"); ok {
				c.HostEvents <- wake(ns, name)
			}
			return
		}
		ns, name, ok := strings.Cut(owner, "/")
		if ok {
			c.VMEvents <- wake(ns, name)
		}
	}, observers)
	hosts := func() []types.NamespacedName {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := make([]types.NamespacedName, 0, len(shared.hosts))
		for h := range shared.hosts {
			out = append(out, h)
		}
		return out
	}
	notify := func(ch chan event.GenericEvent) {
		for _, h := range hosts() {
			ch <- wake(h.Namespace, h.Name)
		}
	}
	opts.Synced = func() {
		notify(c.HostEvents)
		notify(c.PoolEvents)
	}
	opts.HostsChanged = func() { notify(c.HostEvents) }
	opts.PoolChanged = func(old, cur *xenapi.PoolRecord) {
		notify(c.HostEvents)
		if old == nil || cur == nil || old.DefaultSR != cur.DefaultSR {
			notify(c.PoolEvents)
		}
	}
	pc := cache.New(opts)
	return &Conn{Client: xc, Cache: pc, Service: vmservice.New(xc, pc), Observers: observers}
}

// wake is the event that enqueues the object namespace/name: the handlers
// read its name alone, so it carries nothing else (a whole XenVM, zeroed,
// is some 1.5 KB, and a pool's events wake its XenVMs a dozen times each
// on their way to Running).
func wake(namespace, name string) event.GenericEvent {
	return event.GenericEvent{Object: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}}
}

// forget drops a client whose cache stopped (the client was closed).
func (c *Connections) forget(xc *xenapi.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	shared := c.conns[xc]
	if shared == nil {
		return
	}
	delete(c.conns, xc)
	for h := range shared.hosts {
		if c.byHost[h] == shared.conn {
			delete(c.byHost, h)
		}
	}
}

// Release forgets a deleted XenHost: its session is logged out unless
// another XenHost uses it.
func (c *Connections) Release(ctx context.Context, host *virtv1alpha1.XenHost) {
	key := keyOf(host)
	c.mu.Lock()
	if conn := c.byHost[key]; conn != nil {
		if s := c.conns[conn.Client]; s != nil {
			delete(s.hosts, key)
		}
		delete(c.byHost, key)
	}
	c.mu.Unlock()
	c.Sessions.Release(ctx, key.String())
	c.Secrets.Forget(types.NamespacedName{Namespace: host.Namespace, Name: host.Spec.CredentialsSecretRef.Name})
	if t := host.Spec.TLS; t != nil && t.CASecretRef != nil {
		c.Secrets.Forget(types.NamespacedName{Namespace: host.Namespace, Name: t.CASecretRef.Name})
	}
}

// endpointFor checks a XenHost's address and reads its Secrets into an
// endpoint.
func (c *Connections) endpointFor(ctx context.Context, host *virtv1alpha1.XenHost) (xenapi.Endpoint, error) {
	ep := xenapi.Endpoint{URL: strings.TrimRight(host.Spec.Address, "/"), Name: keyOf(host).String()}
	u, err := url.Parse(ep.URL)
	switch {
	case err != nil || u.Host == "":
		return ep, &connectError{reason: virtv1alpha1.ReasonInvalidAddress, err: errors.New("spec.address is not a valid URL")}
	case u.User != nil:
		return ep, &connectError{reason: virtv1alpha1.ReasonInvalidAddress,
			err: errors.New("spec.address carries credentials: put them in the credentials Secret")}
	case u.Scheme == "http" && !host.Spec.AllowInsecureHTTP:
		return ep, &connectError{reason: virtv1alpha1.ReasonInvalidAddress,
			err: errors.New("spec.address is http://, which sends the credentials in clear text: use https://, or set spec.allowInsecureHTTP")}
	case u.Scheme != "http" && u.Scheme != "https":
		return ep, &connectError{reason: virtv1alpha1.ReasonInvalidAddress, err: fmt.Errorf("spec.address has scheme %q: use https://", u.Scheme)}
	}
	creds, err := c.secret(ctx, host.Namespace, host.Spec.CredentialsSecretRef.Name, "credentials")
	if err != nil {
		return ep, err
	}
	ep.Username, ep.Password = string(creds["username"]), string(creds["password"])
	if ep.Username == "" || ep.Password == "" {
		return ep, &connectError{reason: virtv1alpha1.ReasonInvalidSecret,
			err: fmt.Errorf("credentials Secret %s needs the keys username and password", host.Spec.CredentialsSecretRef.Name)}
	}
	if tlsSpec := host.Spec.TLS; tlsSpec != nil {
		ep.InsecureSkipVerify = tlsSpec.InsecureSkipVerify
		ep.CABundle = []byte(tlsSpec.CABundle)
		if ref := tlsSpec.CASecretRef; ref != nil {
			ca, err := c.secret(ctx, host.Namespace, ref.Name, "CA")
			if err != nil {
				return ep, err
			}
			keyName := ref.Key
			if keyName == "" {
				keyName = "ca.crt"
			}
			if ep.CABundle = ca[keyName]; len(ep.CABundle) == 0 {
				return ep, &connectError{reason: virtv1alpha1.ReasonInvalidSecret,
					err: fmt.Errorf("CA Secret %s has no key %s", ref.Name, keyName)}
			}
		}
	}
	ep.MaxConcurrentMutations = c.MaxConcurrentOperations
	if m := host.Spec.MaxConcurrentOperations; m != nil {
		ep.MaxConcurrentMutations = int(*m)
	}
	return ep, nil
}

// secret reads a Secret's data: from the API server when its version
// changed since the last read (a rotation), else as read then.
func (c *Connections) secret(ctx context.Context, namespace, name, what string) (map[string][]byte, error) {
	data, err := c.Secrets.Data(ctx, types.NamespacedName{Namespace: namespace, Name: name})
	if apierrors.IsNotFound(err) {
		return nil, &connectError{reason: virtv1alpha1.ReasonSecretNotFound, err: fmt.Errorf("%s Secret %s not found", what, name)}
	}
	return data, err
}
