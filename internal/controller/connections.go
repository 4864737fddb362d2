package controller

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// The other_config keys the operator tags its VMs with.
const (
	tagUID   = "xen-operator.io/uid"
	tagOwner = "xen-operator.io/owner"
	// tagManagedKeys lists the spec.otherConfig keys the operator set, so that
	// keys removed from the spec are removed from the VM.
	tagManagedKeys = "xen-operator.io/managed-keys"
)

// installPrefix starts the name a VM gets at clone time, before it is
// tagged: a crash between clone and tag leaves a VM the next reconcile finds
// by name.
const installPrefix = "xen-operator-install-"

func installName(uid types.UID) string { return installPrefix + string(uid) }

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
	switch {
	case xenapi.IsAuthenticationFailed(err):
		return virtv1alpha1.ReasonAuthenticationFailed
	case errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &cie),
		xenapi.IsConnectionError(err) && strings.Contains(err.Error(), "certificate"):
		return virtv1alpha1.ReasonTLSError
	case xenapi.IsConnectionError(err):
		return virtv1alpha1.ReasonUnreachable
	default:
		return virtv1alpha1.ReasonXenAPIError
	}
}

// Connections gives the controllers the shared XenAPI client of a XenHost
// and the inventory of its pool.
type Connections struct {
	Pool   *xenapi.Pool
	Reader client.Reader
	// MaxConcurrentOperations is the default cap on operations per pool.
	MaxConcurrentOperations int

	// VMEvents and HostEvents receive the XenVMs and XenHosts whose XenServer
	// objects changed; the controllers watch them.
	VMEvents   chan event.GenericEvent
	HostEvents chan event.GenericEvent

	mu          sync.Mutex
	inventories map[*xenapi.Client]*inventory
}

// NewConnections creates the connections of a manager.
func NewConnections(pool *xenapi.Pool, reader client.Reader, maxOps int) *Connections {
	return &Connections{
		Pool: pool, Reader: reader, MaxConcurrentOperations: maxOps,
		VMEvents:    make(chan event.GenericEvent, 1024),
		HostEvents:  make(chan event.GenericEvent, 64),
		inventories: map[*xenapi.Client]*inventory{},
	}
}

func ownerOf(host *virtv1alpha1.XenHost) string { return host.Namespace + "/" + host.Name }

// endpointFor reads a XenHost's Secrets and builds its endpoint.
func (c *Connections) endpointFor(ctx context.Context, host *virtv1alpha1.XenHost) (xenapi.Endpoint, error) {
	ep := xenapi.Endpoint{URL: strings.TrimRight(host.Spec.Address, "/")}
	if _, err := url.Parse(ep.URL); err != nil {
		return ep, &connectError{reason: virtv1alpha1.ReasonUnreachable, err: fmt.Errorf("address: %w", err)}
	}
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: host.Namespace, Name: host.Spec.CredentialsSecretRef.Name}
	if err := c.Reader.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return ep, &connectError{reason: virtv1alpha1.ReasonSecretNotFound,
				err: fmt.Errorf("credentials Secret %s not found", key.Name)}
		}
		return ep, err
	}
	ep.Username, ep.Password = string(secret.Data["username"]), string(secret.Data["password"])
	if ep.Username == "" || ep.Password == "" {
		return ep, &connectError{reason: virtv1alpha1.ReasonInvalidSecret,
			err: fmt.Errorf("credentials Secret %s needs the keys username and password", key.Name)}
	}
	if tls := host.Spec.TLS; tls != nil {
		ep.InsecureSkipVerify = tls.InsecureSkipVerify
		ep.CABundle = []byte(tls.CABundle)
		if ref := tls.CASecretRef; ref != nil {
			ca := &corev1.Secret{}
			if err := c.Reader.Get(ctx, types.NamespacedName{Namespace: host.Namespace, Name: ref.Name}, ca); err != nil {
				if apierrors.IsNotFound(err) {
					return ep, &connectError{reason: virtv1alpha1.ReasonSecretNotFound,
						err: fmt.Errorf("CA Secret %s not found", ref.Name)}
				}
				return ep, err
			}
			keyName := ref.Key
			if keyName == "" {
				keyName = "ca.crt"
			}
			if ep.CABundle = ca.Data[keyName]; len(ep.CABundle) == 0 {
				return ep, &connectError{reason: virtv1alpha1.ReasonInvalidSecret,
					err: fmt.Errorf("CA Secret %s has no key %s", ref.Name, keyName)}
			}
		}
	}
	if m := host.Spec.MaxConcurrentOperations; m != nil {
		ep.MaxConcurrentMutations = int(*m)
	} else {
		ep.MaxConcurrentMutations = c.MaxConcurrentOperations
	}
	return ep, nil
}

// Connect returns the shared client of a XenHost and its pool's inventory,
// started if needed. It makes no XenAPI call itself.
func (c *Connections) Connect(ctx context.Context, host *virtv1alpha1.XenHost) (*xenapi.Client, *inventory, error) {
	ep, err := c.endpointFor(ctx, host)
	if err != nil {
		return nil, nil, err
	}
	xc, err := c.Pool.Client(ownerOf(host), ep)
	if err != nil {
		return nil, nil, &connectError{reason: virtv1alpha1.ReasonTLSError, err: err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inv, ok := c.inventories[xc]
	if !ok {
		sub, err := xc.Subscribe()
		if err != nil {
			return nil, nil, err
		}
		inv = newInventory(xc, c)
		c.inventories[xc] = inv
		go inv.run(sub)
	}
	inv.addOwner(host)
	return xc, inv, nil
}

// Release forgets a deleted XenHost: its session is logged out unless
// another XenHost uses it.
func (c *Connections) Release(ctx context.Context, host *virtv1alpha1.XenHost) {
	c.Pool.Release(ctx, ownerOf(host))
}

func (c *Connections) forget(inv *inventory) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inventories[inv.client] == inv {
		delete(c.inventories, inv.client)
	}
}

// inventory is what the event stream says about one pool: its VMs, hosts and
// guest metrics, indexed for the lookups the controllers make.
type inventory struct {
	client *xenapi.Client
	conns  *Connections

	mu           sync.RWMutex
	synced       bool
	syncedCh     chan struct{}
	vms          map[string]*xenapi.VM
	byUUID       map[string]string
	byUID        map[string]string
	byInstall    map[string]string // install name -> ref
	byGuest      map[string]string // VM_guest_metrics ref -> VM ref
	hosts        map[string]*xenapi.Host
	guestMetrics map[string]*xenapi.GuestMetrics
	owners       map[types.NamespacedName]struct{}
	// tasks are the tasks the controllers began, with the XenVM to wake.
	tasks     map[string]*xenapi.Task
	taskOwner map[string]types.NamespacedName
	// seen collects the refs of a full resync, to drop objects it missed.
	seen map[string]struct{}

	// poolInfo caches the pool and its default SR's UUID.
	poolMu    sync.Mutex
	pool      *xenapi.PoolRecord
	defaultSR string
}

func newInventory(c *xenapi.Client, conns *Connections) *inventory {
	return &inventory{
		client: c, conns: conns, syncedCh: make(chan struct{}),
		vms: map[string]*xenapi.VM{}, byUUID: map[string]string{}, byUID: map[string]string{}, byInstall: map[string]string{},
		byGuest: map[string]string{},
		hosts:   map[string]*xenapi.Host{}, guestMetrics: map[string]*xenapi.GuestMetrics{},
		owners: map[types.NamespacedName]struct{}{}, seen: map[string]struct{}{},
		tasks: map[string]*xenapi.Task{}, taskOwner: map[string]types.NamespacedName{},
	}
}

// followTask makes the inventory keep a task's state and wake owner when it changes.
func (inv *inventory) followTask(ref string, owner types.NamespacedName) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.taskOwner[ref] = owner
}

// task returns a followed task's last state, nil if no event came yet;
// gone tells that xapi deleted it.
func (inv *inventory) task(ref string) (t *xenapi.Task, gone bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	t, ok := inv.tasks[ref]
	return t, ok && t == nil
}

// forgetTask stops following a task.
func (inv *inventory) forgetTask(ref string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	delete(inv.tasks, ref)
	delete(inv.taskOwner, ref)
}

func (inv *inventory) addOwner(host *virtv1alpha1.XenHost) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.owners[types.NamespacedName{Namespace: host.Namespace, Name: host.Name}] = struct{}{}
}

// run applies the event stream until the client closes.
func (inv *inventory) run(sub *xenapi.Subscription) {
	defer inv.conns.forget(inv)
	for e := range sub.Events() {
		inv.apply(e)
	}
}

func (inv *inventory) apply(e xenapi.Event) {
	var notifyVMs []types.NamespacedName
	notifyHosts := false
	inv.mu.Lock()
	switch {
	case e.Op == xenapi.OpSynced:
		// Drop what the resync did not mention.
		for ref, vm := range inv.vms {
			if _, ok := inv.seen[ref]; !ok {
				notifyVMs = append(notifyVMs, ownerName(vm))
				inv.removeVMLocked(ref)
			}
		}
		for ref := range inv.hosts {
			if _, ok := inv.seen[ref]; !ok {
				delete(inv.hosts, ref)
			}
		}
		for ref := range inv.guestMetrics {
			if _, ok := inv.seen[ref]; !ok {
				delete(inv.guestMetrics, ref)
			}
		}
		inv.seen = map[string]struct{}{}
		if !inv.synced {
			inv.synced = true
			close(inv.syncedCh)
		}
		notifyHosts = true
	case e.Class == xenapi.ClassVM:
		if e.Op != xenapi.OpDel {
			inv.seen[e.Ref] = struct{}{}
		}
		if old, ok := inv.vms[e.Ref]; ok {
			notifyVMs = append(notifyVMs, ownerName(old))
			inv.removeVMLocked(e.Ref)
		}
		if e.Op != xenapi.OpDel && e.VM != nil {
			inv.vms[e.Ref] = e.VM
			inv.byUUID[e.VM.UUID] = e.Ref
			if uid := e.VM.OtherConfig[tagUID]; uid != "" {
				inv.byUID[uid] = e.Ref
			}
			if strings.HasPrefix(e.VM.NameLabel, installPrefix) {
				inv.byInstall[e.VM.NameLabel] = e.Ref
			}
			if e.VM.GuestMetrics != "" {
				inv.byGuest[e.VM.GuestMetrics] = e.Ref
			}
			notifyVMs = append(notifyVMs, ownerName(e.VM))
		}
	case e.Class == xenapi.ClassHost:
		if e.Op == xenapi.OpDel {
			delete(inv.hosts, e.Ref)
		} else if e.Host != nil {
			inv.seen[e.Ref] = struct{}{}
			inv.hosts[e.Ref] = e.Host
		}
		notifyHosts = inv.synced
	case e.Class == xenapi.ClassTask:
		if owner, ok := inv.taskOwner[e.Ref]; ok {
			if e.Op == xenapi.OpDel {
				inv.tasks[e.Ref] = nil
			} else {
				inv.tasks[e.Ref] = e.Task
			}
			notifyVMs = append(notifyVMs, owner)
		}
	case e.Class == xenapi.ClassGuestMetrics:
		if e.Op == xenapi.OpDel {
			delete(inv.guestMetrics, e.Ref)
		} else if e.GuestMetrics != nil {
			inv.seen[e.Ref] = struct{}{}
			inv.guestMetrics[e.Ref] = e.GuestMetrics
		}
		if vm := inv.vms[inv.byGuest[e.Ref]]; vm != nil {
			notifyVMs = append(notifyVMs, ownerName(vm))
		}
	}
	var owners []types.NamespacedName
	if notifyHosts {
		for o := range inv.owners {
			owners = append(owners, o)
		}
	}
	inv.mu.Unlock()

	for _, n := range notifyVMs {
		if n.Name != "" {
			inv.conns.VMEvents <- event.GenericEvent{Object: &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: n.Namespace, Name: n.Name}}}
		}
	}
	for _, n := range owners {
		inv.conns.HostEvents <- event.GenericEvent{Object: &virtv1alpha1.XenHost{ObjectMeta: metav1.ObjectMeta{Namespace: n.Namespace, Name: n.Name}}}
	}
}

func (inv *inventory) removeVMLocked(ref string) {
	vm := inv.vms[ref]
	delete(inv.vms, ref)
	if vm == nil {
		return
	}
	if inv.byUUID[vm.UUID] == ref {
		delete(inv.byUUID, vm.UUID)
	}
	if uid := vm.OtherConfig[tagUID]; uid != "" && inv.byUID[uid] == ref {
		delete(inv.byUID, uid)
	}
	if inv.byInstall[vm.NameLabel] == ref {
		delete(inv.byInstall, vm.NameLabel)
	}
	if inv.byGuest[vm.GuestMetrics] == ref {
		delete(inv.byGuest, vm.GuestMetrics)
	}
}

// ownerName is the XenVM a VM's tag names.
func ownerName(vm *xenapi.VM) types.NamespacedName {
	ns, name, ok := strings.Cut(vm.OtherConfig[tagOwner], "/")
	if !ok {
		return types.NamespacedName{}
	}
	return types.NamespacedName{Namespace: ns, Name: name}
}

// waitSynced waits for the first full sync.
func (inv *inventory) waitSynced(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-inv.syncedCh:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// vm returns the VM with ref.
func (inv *inventory) vm(ref string) *xenapi.VM {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.vms[ref]
}

// vmByUUID returns the VM with a UUID.
func (inv *inventory) vmByUUID(uuid string) *xenapi.VM {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.vms[inv.byUUID[uuid]]
}

// vmFor finds the VM of a XenVM: tagged with its UID, or named with its
// install name (cloned but not tagged yet).
func (inv *inventory) vmFor(uid types.UID) *xenapi.VM {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	if ref, ok := inv.byUID[string(uid)]; ok {
		return inv.vms[ref]
	}
	return inv.vms[inv.byInstall[installName(uid)]]
}

// waitForVM waits until the inventory has seen ref (after a clone).
func (inv *inventory) waitForVM(ctx context.Context, ref string, d time.Duration) *xenapi.VM {
	deadline := time.Now().Add(d)
	for {
		if vm := inv.vm(ref); vm != nil {
			return vm
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// templates returns the templates whose name_label or UUID is nameOrUUID.
func (inv *inventory) templates(nameOrUUID string) []*xenapi.VM {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	var out []*xenapi.VM
	for _, vm := range inv.vms {
		if vm.IsTemplate && !vm.IsSnapshot && (vm.UUID == nameOrUUID || vm.NameLabel == nameOrUUID) {
			if vm.UUID == nameOrUUID {
				return []*xenapi.VM{vm}
			}
			out = append(out, vm)
		}
	}
	return out
}

// host returns a host by ref.
func (inv *inventory) host(ref string) *xenapi.Host {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.hosts[ref]
}

// hostList returns every host.
func (inv *inventory) hostList() []*xenapi.Host {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := make([]*xenapi.Host, 0, len(inv.hosts))
	for _, h := range inv.hosts {
		out = append(out, h)
	}
	return out
}

// hostByNameOrUUID finds a host by name_label, hostname or UUID.
func (inv *inventory) hostByNameOrUUID(s string) *xenapi.Host {
	for _, h := range inv.hostList() {
		if h.UUID == s || h.NameLabel == s || h.Hostname == s {
			return h
		}
	}
	return nil
}

// guest returns a VM's guest metrics, if its agent reported.
func (inv *inventory) guest(vm *xenapi.VM) *xenapi.GuestMetrics {
	if vm.GuestMetrics == "" {
		return nil
	}
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.guestMetrics[vm.GuestMetrics]
}

// poolInfo returns the pool and its default SR's UUID, fetched once.
func (inv *inventory) poolInfo(ctx context.Context) (*xenapi.PoolRecord, string, error) {
	inv.poolMu.Lock()
	defer inv.poolMu.Unlock()
	if inv.pool != nil {
		return inv.pool, inv.defaultSR, nil
	}
	pool, err := inv.client.PoolRecord(ctx)
	if err != nil {
		return nil, "", err
	}
	srUUID := ""
	if pool.DefaultSR != "" {
		sr, err := inv.client.SR(ctx, pool.DefaultSR)
		if err != nil {
			return nil, "", err
		}
		srUUID = sr.UUID
	}
	inv.pool, inv.defaultSR = pool, srUUID
	return pool, srUUID, nil
}
