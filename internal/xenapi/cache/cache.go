// Package cache keeps what a XenServer pool's event stream says, shaped like
// a client-go informer: typed stores with named indexes, HasSynced, change
// handlers that wake the objects' owners, and a full resync that drops
// whatever it did not see again, tasks included. Beside the stores it keeps,
// for a bounded time, what this process wrote and the stream has not shown
// yet (assume.go). Reconcilers read it and never wait on it: a cache that has
// not synced means "come back later".
//
// The cache makes no XenAPI call and knows nothing of Kubernetes: owners are
// opaque strings its creator derives (for the operator, a XenVM's
// namespace/name from the VM's tag).
package cache

import (
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// The indexes every VM store has.
const (
	// IndexUUID indexes VMs, hosts and SRs by UUID.
	IndexUUID = "uuid"
	// IndexGuestMetrics indexes VMs by their VM_guest_metrics ref.
	IndexGuestMetrics = "guestMetrics"
	// IndexTemplate indexes templates (not snapshots) by name_label and by UUID.
	IndexTemplate = "template"
	// IndexName indexes networks and SRs by name_label.
	IndexName = "name"
	// IndexVM indexes VBDs and VIFs by their VM's ref.
	IndexVM = "vm"
	// IndexSR indexes PBDs by their SR's ref.
	IndexSR = "sr"
	// IndexGuestOn indexes the VMs that are not a control domain by the host
	// they are resident on (what xapi's host.resident_VMs derives from
	// VM.resident_on, without the control domain): a host's record carries
	// them all, ten thousand refs in every event of a big host, which the
	// cache does not decode.
	IndexGuestOn = "guestOn"
)

// Options configure a Cache. Every function is optional.
type Options struct {
	// VMIndexes are indexes of VMs besides IndexUUID, IndexGuestMetrics and
	// IndexTemplate (for the operator: its tags).
	VMIndexes map[string]IndexFunc[*xenapi.VM]
	// VDIIndexes are indexes of VDIs besides IndexUUID (for the operator:
	// its tags).
	VDIIndexes map[string]IndexFunc[*xenapi.VDI]
	// OwnerOf names the owner to wake when a VM (or its guest metrics, or
	// one of its VBDs, VIFs or disks) changes, "" for none.
	OwnerOf func(vm *xenapi.VM) string
	// OwnerOfVDI names the owner to wake when a disk no VM uses changes
	// (for the operator: the disk's tag), "" for none.
	OwnerOfVDI func(vdi *xenapi.VDI) string
	// Wake is called with the owner of an object that changed.
	Wake func(owner string)
	// Synced is called after every full sync: the first, and each one after
	// the stream was lost (xapi restarted, the connection broke).
	Synced func()
	// PoolChanged is called when the pool record changes after the first sync.
	PoolChanged func(old, cur *xenapi.PoolRecord)
	// HostsChanged is called when a host changes after the first sync, and
	// when a VM comes to or leaves a host (GuestsOn changes).
	HostsChanged func()
	// AssumeFor bounds how long what this process wrote overrides what the
	// stream shows (default 30s).
	AssumeFor time.Duration
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Cache is the event stream's view of one pool.
type Cache struct {
	VMs          *Store[*xenapi.VM]
	Hosts        *Store[*xenapi.Host]
	GuestMetrics *Store[*xenapi.GuestMetrics]
	Tasks        *Store[*xenapi.Task]
	Pools        *Store[*xenapi.PoolRecord]
	SRs          *Store[*xenapi.SR]
	PBDs         *Store[*xenapi.PBD]
	VDIs         *Store[*xenapi.VDI]
	VBDs         *Store[*xenapi.VBD]
	VIFs         *Store[*xenapi.VIF]
	Networks     *Store[*xenapi.Network]

	opts   Options
	synced atomic.Bool
	done   chan struct{}

	// seen holds the refs, per class, a full resync mentioned so far (nil
	// between resyncs): what it did not mention is gone. resyncAsked is when
	// the resync was asked for, resyncOf the classes it is about (the
	// watcher's streams sync apart; nil: all).
	seen        map[string]map[string]struct{}
	resyncAsked time.Time
	resyncOf    []string
	// unsynced are the classes no full sync was applied for yet: the cache
	// has synced when none is left.
	unsynced map[string]bool

	mu sync.Mutex
	// assumed, expected and tracked: see assume.go.
	assumed  map[string]*assumption
	expected map[string]*expectation
	tracked  map[string]*trackedTask
	finished map[string]time.Time
}

// New creates an empty cache; Run feeds it.
func New(opts Options) *Cache {
	if opts.AssumeFor <= 0 {
		opts.AssumeFor = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	vmIndexes := map[string]IndexFunc[*xenapi.VM]{
		IndexUUID:         func(vm *xenapi.VM) []string { return []string{vm.UUID} },
		IndexGuestMetrics: func(vm *xenapi.VM) []string { return nonEmpty(vm.GuestMetrics) },
		IndexGuestOn:      func(vm *xenapi.VM) []string { return nonEmpty(residentOn(vm)) },
		IndexTemplate: func(vm *xenapi.VM) []string {
			if !vm.IsTemplate || vm.IsSnapshot {
				return nil
			}
			return []string{vm.NameLabel, vm.UUID}
		},
	}
	for name, fn := range opts.VMIndexes {
		vmIndexes[name] = fn
	}
	vdiIndexes := byUUID(func(v *xenapi.VDI) string { return v.UUID })
	for name, fn := range opts.VDIIndexes {
		vdiIndexes[name] = fn
	}
	c := &Cache{
		VMs:          newStore(func(v *xenapi.VM) string { return v.Ref }, vmIndexes),
		Hosts:        newStore(func(h *xenapi.Host) string { return h.Ref }, byUUID(func(h *xenapi.Host) string { return h.UUID })),
		GuestMetrics: newStore(func(g *xenapi.GuestMetrics) string { return g.Ref }, nil),
		Tasks:        newStore(func(t *xenapi.Task) string { return t.Ref }, nil),
		Pools:        newStore(func(p *xenapi.PoolRecord) string { return p.Ref }, nil),
		SRs:          newStore(func(s *xenapi.SR) string { return s.Ref }, byUUIDAndName(func(s *xenapi.SR) (string, string) { return s.UUID, s.NameLabel })),
		PBDs:         newStore(func(p *xenapi.PBD) string { return p.Ref }, map[string]IndexFunc[*xenapi.PBD]{IndexSR: func(p *xenapi.PBD) []string { return nonEmpty(p.SR) }}),
		VDIs:         newStore(func(v *xenapi.VDI) string { return v.Ref }, vdiIndexes),
		VBDs:         newStore(func(v *xenapi.VBD) string { return v.Ref }, map[string]IndexFunc[*xenapi.VBD]{IndexVM: func(v *xenapi.VBD) []string { return nonEmpty(v.VM) }}),
		VIFs:         newStore(func(v *xenapi.VIF) string { return v.Ref }, map[string]IndexFunc[*xenapi.VIF]{IndexVM: func(v *xenapi.VIF) []string { return nonEmpty(v.VM) }}),
		Networks:     newStore(func(n *xenapi.Network) string { return n.Ref }, byUUIDAndName(func(n *xenapi.Network) (string, string) { return n.UUID, n.NameLabel })),
		opts:         opts,
		done:         make(chan struct{}),
		unsynced:     map[string]bool{},
		assumed:      map[string]*assumption{},
		expected:     map[string]*expectation{},
		tracked:      map[string]*trackedTask{},
		finished:     map[string]time.Time{},
	}
	for class := range c.stores() {
		c.unsynced[class] = true
	}
	return c
}

// stores is the classes the cache keeps, each with the refs its store holds.
func (c *Cache) stores() map[string]func() []string {
	return map[string]func() []string{
		xenapi.ClassVM: c.VMs.refs, xenapi.ClassGuestMetrics: c.GuestMetrics.refs, xenapi.ClassTask: c.Tasks.refs,
		xenapi.ClassHost: c.Hosts.refs, xenapi.ClassPool: c.Pools.refs, xenapi.ClassSR: c.SRs.refs,
		xenapi.ClassPBD: c.PBDs.refs, xenapi.ClassVDI: c.VDIs.refs, xenapi.ClassVBD: c.VBDs.refs,
		xenapi.ClassVIF: c.VIFs.refs, xenapi.ClassNetwork: c.Networks.refs,
	}
}

func byUUID[T any](uuid func(T) string) map[string]IndexFunc[T] {
	return map[string]IndexFunc[T]{IndexUUID: func(o T) []string { return []string{uuid(o)} }}
}

func byUUIDAndName[T any](keys func(T) (uuid, name string)) map[string]IndexFunc[T] {
	return map[string]IndexFunc[T]{
		IndexUUID: func(o T) []string { u, _ := keys(o); return []string{u} },
		IndexName: func(o T) []string { _, n := keys(o); return []string{n} },
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// HasSynced tells whether a full sync of every class has been applied.
func (c *Cache) HasSynced() bool { return c.synced.Load() }

// Done is closed when Run returns.
func (c *Cache) Done() <-chan struct{} { return c.done }

// Run applies the events until the channel closes (the client closed).
func (c *Cache) Run(events <-chan xenapi.Event) {
	defer close(c.done)
	for e := range events {
		c.Apply(e)
	}
}

// Apply applies one event. Run calls it; tests call it directly.
func (c *Cache) Apply(e xenapi.Event) {
	switch {
	case e.Op == xenapi.OpResync:
		c.seen, c.resyncAsked, c.resyncOf = map[string]map[string]struct{}{}, e.Time, e.Classes
		return
	case e.Op == xenapi.OpSynced:
		c.sweep(e)
		return
	case e.Op == xenapi.OpPolled:
		if e.Covers(xenapi.ClassVM) { // what this process writes is of VMs
			c.caughtUp(e.Time)
		}
		return
	case e.Op != xenapi.OpDel && e.Object != nil && c.seen != nil:
		c.markSeen(e.Class, e.Ref)
	}
	switch e.Class {
	case xenapi.ClassVM:
		vm, _ := e.Object.(*xenapi.VM)
		c.applyVM(e.Ref, slimVM(vm))
	case xenapi.ClassGuestMetrics:
		g, _ := e.Object.(*xenapi.GuestMetrics)
		apply(c.GuestMetrics, e.Ref, slimGuestMetrics(g))
		for _, vm := range c.VMs.ByIndex(IndexGuestMetrics, e.Ref) {
			c.wake(c.ownerOf(vm))
		}
	case xenapi.ClassTask:
		t, _ := e.Object.(*xenapi.Task)
		apply(c.Tasks, e.Ref, t)
		c.taskChanged(e.Ref, t)
	case xenapi.ClassHost:
		h, _ := e.Object.(*xenapi.Host)
		old := apply(c.Hosts, e.Ref, h)
		// xapi sends a host again with every VM that starts or stops on it
		// (its resident_VMs, which the record does not keep): news only
		// when what the record keeps changed. The VMs' own events tell of
		// the guests that came and went (applyVM).
		if !reflect.DeepEqual(old, h) && c.HasSynced() && c.opts.HostsChanged != nil {
			c.opts.HostsChanged()
		}
	case xenapi.ClassPool:
		p, _ := e.Object.(*xenapi.PoolRecord)
		old := apply(c.Pools, e.Ref, p)
		if c.HasSynced() && c.opts.PoolChanged != nil {
			c.opts.PoolChanged(old, p)
		}
	case xenapi.ClassSR:
		sr, _ := e.Object.(*xenapi.SR)
		apply(c.SRs, e.Ref, sr)
	case xenapi.ClassPBD:
		p, _ := e.Object.(*xenapi.PBD)
		apply(c.PBDs, e.Ref, p)
	case xenapi.ClassNetwork:
		n, _ := e.Object.(*xenapi.Network)
		apply(c.Networks, e.Ref, n)
	default:
		c.applyDevice(e)
	}
}

// applyDevice applies a VBD, VIF or VDI event and wakes the owners of the
// VMs it concerns, before and after.
func (c *Cache) applyDevice(e xenapi.Event) {
	switch e.Class {
	case xenapi.ClassVBD:
		v, _ := e.Object.(*xenapi.VBD)
		applyAttached(c, c.VBDs, e.Ref, slimVBD(v), func(d *xenapi.VBD) string { return d.VM })
	case xenapi.ClassVIF:
		v, _ := e.Object.(*xenapi.VIF)
		applyAttached(c, c.VIFs, e.Ref, slimVIF(v), func(d *xenapi.VIF) string { return d.VM })
	case xenapi.ClassVDI:
		v, _ := e.Object.(*xenapi.VDI)
		v = slimVDI(v)
		old := apply(c.VDIs, e.Ref, v)
		for _, d := range []*xenapi.VDI{old, v} {
			if d == nil {
				continue
			}
			if c.opts.OwnerOfVDI != nil {
				c.wake(c.opts.OwnerOfVDI(d))
			}
			for _, ref := range d.VBDs {
				if vbd, ok := c.VBDs.Get(ref); ok {
					c.wakeVM(vbd.VM)
				}
			}
		}
	}
}

// applyAttached applies a VBD or VIF event and wakes the owner of its VM,
// before and after.
func applyAttached[T comparable](c *Cache, s *Store[T], ref string, obj T, vmOf func(T) string) {
	var zero T
	old := apply(s, ref, obj)
	for _, d := range []T{old, obj} {
		if d != zero {
			c.wakeVM(vmOf(d))
		}
	}
}

func (c *Cache) wakeVM(ref string) {
	if vm, ok := c.VMs.Get(ref); ok {
		c.wake(c.ownerOf(vm))
	}
}

// apply stores obj under ref, or removes ref when obj is nil, and returns
// the previous object.
func apply[T comparable](s *Store[T], ref string, obj T) T {
	var zero T
	if obj == zero {
		old, _ := s.remove(ref)
		return old
	}
	old, _ := s.Get(ref)
	s.put(obj)
	return old
}

func (c *Cache) applyVM(ref string, vm *xenapi.VM) {
	old := apply(c.VMs, ref, vm)
	c.settle(ref, vm)
	if old != nil {
		c.wake(c.ownerOf(old))
	}
	if vm != nil {
		if o := c.ownerOf(vm); old == nil || o != c.ownerOf(old) {
			c.wake(o)
		}
	}
	// A host's guests are counted from its VMs (GuestsOn): a VM that came or
	// went is news for the host, whichever of the two events came first.
	if residentOn(old) != residentOn(vm) && c.HasSynced() && c.opts.HostsChanged != nil {
		c.opts.HostsChanged()
	}
}

func residentOn(vm *xenapi.VM) string {
	if vm == nil || vm.IsControlDomain {
		return ""
	}
	return vm.ResidentOn
}

func (c *Cache) markSeen(class, ref string) {
	refs := c.seen[class]
	if refs == nil {
		refs = map[string]struct{}{}
		c.seen[class] = refs
	}
	refs[ref] = struct{}{}
}

// sweep ends a full sync: whatever it did not mention of the classes it is
// about is deleted, with the same notifications as a deletion.
func (c *Cache) sweep(synced xenapi.Event) {
	if c.seen != nil { // always, from the watcher: OpResync came first
		for class, refs := range c.stores() {
			if !c.resyncing(class) {
				continue
			}
			for _, ref := range refs() {
				if _, ok := c.seen[class][ref]; !ok {
					c.Apply(xenapi.Event{Class: class, Op: xenapi.OpDel, Ref: ref})
				}
			}
		}
		if c.resyncing(xenapi.ClassTask) {
			c.sweepTracked()
		}
	}
	c.seen, c.resyncOf = nil, nil
	for class := range c.unsynced {
		if synced.Covers(class) {
			delete(c.unsynced, class)
		}
	}
	if len(c.unsynced) > 0 {
		return // the other stream's first sync is still to come
	}
	c.synced.Store(true)
	if c.opts.Synced != nil {
		c.opts.Synced()
	}
}

// resyncing tells whether the full sync under way is about a class.
func (c *Cache) resyncing(class string) bool {
	return c.resyncOf == nil || slices.Contains(c.resyncOf, class)
}

func (c *Cache) ownerOf(vm *xenapi.VM) string {
	if c.opts.OwnerOf == nil || vm == nil {
		return ""
	}
	return c.opts.OwnerOf(vm)
}

// Wake wakes an owner as the cache's handlers do, for news that does not
// come from the event stream (for the operator: room for an install).
func (c *Cache) Wake(owner string) { c.wake(owner) }

func (c *Cache) wake(owner string) {
	if owner != "" && c.opts.Wake != nil {
		c.opts.Wake(owner)
	}
}

// Pool returns the pool record (a standalone host is a pool of one).
func (c *Cache) Pool() (*xenapi.PoolRecord, bool) {
	for _, p := range c.Pools.List() {
		return p, true
	}
	return nil, false
}

// DefaultSR returns the pool's default SR, if it has one the cache knows.
func (c *Cache) DefaultSR() (*xenapi.SR, bool) {
	p, ok := c.Pool()
	if !ok || p.DefaultSR == "" {
		return nil, false
	}
	return c.SRs.Get(p.DefaultSR)
}

// Host returns the host with a ref.
func (c *Cache) Host(ref string) (*xenapi.Host, bool) { return c.Hosts.Get(ref) }

// GuestOf returns what a VM's guest agent reports, if it reported.
func (c *Cache) GuestOf(vm *xenapi.VM) (*xenapi.GuestMetrics, bool) {
	if vm.GuestMetrics == "" {
		return nil, false
	}
	return c.GuestMetrics.Get(vm.GuestMetrics)
}

// VBDsOf returns a VM's VBDs.
func (c *Cache) VBDsOf(vm *xenapi.VM) []*xenapi.VBD { return c.VBDs.ByIndex(IndexVM, vm.Ref) }

// VIFsOf returns a VM's VIFs.
func (c *Cache) VIFsOf(vm *xenapi.VM) []*xenapi.VIF { return c.VIFs.ByIndex(IndexVM, vm.Ref) }

// GuestsOn counts the VMs resident on a host besides its control domain:
// host.resident_VMs less the control domain, from the VMs' resident_on.
func (c *Cache) GuestsOn(host string) int { return c.VMs.CountByIndex(IndexGuestOn, host) }

// HostsOf returns the refs of the hosts whose PBD of an SR is plugged: the
// hosts a VM with a disk there can run on.
func (c *Cache) HostsOf(sr *xenapi.SR) []string {
	var hosts []string
	for _, p := range c.PBDs.ByIndex(IndexSR, sr.Ref) {
		if p.CurrentlyAttached {
			hosts = append(hosts, p.Host)
		}
	}
	return hosts
}
