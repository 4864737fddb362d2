package cache

import (
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// What this process did that the event stream has not shown yet, kept in one
// place beside the stores (client-go's MutationCache idea): a reconcile that
// runs between a write and its event must see the write, or it does the
// work again (a second provision makes a second set of disks). Each entry
// is bounded in time (Options.AssumeFor): an event that never comes cannot
// hide xapi's word for longer.
//
//   - Assumed writes: fields of a VM this process set. Reads of the VM see
//     them until the cached record shows the same values, or until the
//     cache applied an event.from call made after the write (caughtUp);
//     current_operations, which a synchronous call's own events show with
//     its operation, only until the latter.
//   - Expected VMs: a VM this process created (a clone) that the cache has
//     not seen; its owner is woken when it arrives.
//   - Tracked tasks: tasks whose owner is woken when they change, and which
//     the cache can tell are gone.

// Field is a VM field this process writes.
type Field int

// The fields an assumption can hold.
const (
	FieldNameLabel Field = iota
	FieldNameDescription
	FieldOtherConfig
	FieldIsTemplate
	FieldAffinity
	FieldVCPUs
	FieldMemory
	FieldBlockedOperations
	FieldTags
	FieldHARestartPriority
	// FieldCurrentOperations: an operation a synchronous call ran is over
	// when the call returns (xapi removes it first). The events from while
	// it ran may still be on their way, and the cache may show the VM as it
	// was before it began: equal values prove nothing, and only a poll made
	// after the call ends the assumption.
	FieldCurrentOperations
	fieldCount
)

// untilPolled marks the fields whose assumptions only a poll made after
// the write ends (see caughtUp), never a cached value equal to them.
var untilPolled = [fieldCount]bool{FieldCurrentOperations: true}

// vmFields copies a field from one record to another and reads it for
// comparison.
var vmFields = [fieldCount]struct {
	copy func(dst, src *xenapi.VM)
	get  func(vm *xenapi.VM) any
}{
	FieldNameLabel: {
		func(d, s *xenapi.VM) { d.NameLabel = s.NameLabel },
		func(v *xenapi.VM) any { return v.NameLabel }},
	FieldNameDescription: {
		func(d, s *xenapi.VM) { d.NameDescription = s.NameDescription },
		func(v *xenapi.VM) any { return v.NameDescription }},
	FieldOtherConfig: {
		func(d, s *xenapi.VM) { d.OtherConfig = maps.Clone(s.OtherConfig) },
		func(v *xenapi.VM) any { return v.OtherConfig }},
	FieldIsTemplate: {
		func(d, s *xenapi.VM) { d.IsTemplate = s.IsTemplate },
		func(v *xenapi.VM) any { return v.IsTemplate }},
	FieldAffinity: {
		func(d, s *xenapi.VM) { d.Affinity = s.Affinity },
		func(v *xenapi.VM) any { return v.Affinity }},
	FieldVCPUs: {
		func(d, s *xenapi.VM) { d.VCPUsMax, d.VCPUsAtStartup = s.VCPUsMax, s.VCPUsAtStartup },
		func(v *xenapi.VM) any { return [2]int64{v.VCPUsMax, v.VCPUsAtStartup} }},
	FieldBlockedOperations: {
		func(d, s *xenapi.VM) { d.BlockedOperations = maps.Clone(s.BlockedOperations) },
		func(v *xenapi.VM) any { return v.BlockedOperations }},
	FieldTags: {
		func(d, s *xenapi.VM) { d.Tags = slices.Clone(s.Tags) },
		func(v *xenapi.VM) any { return v.Tags }},
	FieldHARestartPriority: {
		func(d, s *xenapi.VM) { d.HARestartPriority = s.HARestartPriority },
		func(v *xenapi.VM) any { return v.HARestartPriority }},
	FieldCurrentOperations: {
		func(d, s *xenapi.VM) { d.CurrentOperations = maps.Clone(s.CurrentOperations) },
		func(v *xenapi.VM) any { return v.CurrentOperations }},
	FieldMemory: {
		func(d, s *xenapi.VM) {
			d.MemoryStaticMin, d.MemoryStaticMax = s.MemoryStaticMin, s.MemoryStaticMax
			d.MemoryDynamicMin, d.MemoryDynamicMax = s.MemoryDynamicMin, s.MemoryDynamicMax
		},
		func(v *xenapi.VM) any {
			return [4]int64{v.MemoryStaticMin, v.MemoryStaticMax, v.MemoryDynamicMin, v.MemoryDynamicMax}
		}},
}

// assumption is the VM as this process left it, until when each field it
// wrote overrides the cache, and when each was assumed (after its write
// returned).
type assumption struct {
	vm    *xenapi.VM
	until [fieldCount]time.Time
	since [fieldCount]time.Time
}

// expectation is a VM this process created and the cache has not seen.
type expectation struct {
	ref, owner string
	until      time.Time
}

// trackedTask is a task whose owner is woken when it changes.
type trackedTask struct {
	owner, note string
	since       time.Time
	gone        bool
}

// Clone returns a copy of vm that the caller may modify.
func Clone(vm *xenapi.VM) *xenapi.VM {
	c := *vm
	c.OtherConfig = maps.Clone(vm.OtherConfig)
	c.CurrentOperations = maps.Clone(vm.CurrentOperations)
	c.BlockedOperations = maps.Clone(vm.BlockedOperations)
	c.Tags = slices.Clone(vm.Tags)
	return &c
}

// VM returns a VM as this process last knows it: the cached record, with the
// fields this process wrote and the cache does not show yet. The result is
// the caller's to modify.
func (c *Cache) VM(ref string) (*xenapi.VM, bool) {
	cached, ok := c.VMs.Get(ref)
	if !ok {
		return nil, false
	}
	return c.overlay(cached), true
}

// VMsByIndex is Store.ByIndex for VMs, with the overlay of VM.
func (c *Cache) VMsByIndex(index, value string) []*xenapi.VM {
	vms := c.VMs.ByIndex(index, value)
	for i, vm := range vms {
		vms[i] = c.overlay(vm)
	}
	return vms
}

func (c *Cache) overlay(cached *xenapi.VM) *xenapi.VM {
	c.mu.Lock()
	// The record again, under c.mu: an event drops the assumptions it shows
	// (settle, under c.mu) after the store holds it. The record read before
	// that event, overlaid without the assumptions it dropped, would be the
	// VM as if this process's writes had not happened (a provision done
	// twice: the view showed the disks key the first one had removed).
	if cur, ok := c.VMs.Get(cached.Ref); ok {
		cached = cur
	}
	var assumed *xenapi.VM
	var until [fieldCount]time.Time
	if a := c.assumed[cached.Ref]; a != nil {
		assumed, until = a.vm, a.until
	}
	c.mu.Unlock()
	vm := Clone(cached)
	if assumed == nil {
		return vm
	}
	now := c.opts.Now()
	for f := range fieldCount {
		if now.Before(until[f]) {
			vmFields[f].copy(vm, assumed)
		}
	}
	return vm
}

// AssumeVM records that this process wrote fields of a VM: write applies
// the change to the VM as this process knows it. Reads through VM see the
// change until the cache shows it, or shows the VM as of after the call
// (caughtUp), or for Options.AssumeFor. Call it once the write returned.
func (c *Cache) AssumeVM(ref string, write func(vm *xenapi.VM), fields ...Field) {
	cached, ok := c.VMs.Get(ref)
	var base *xenapi.VM
	if ok {
		base = c.overlay(cached)
	} else {
		base = &xenapi.VM{Ref: ref}
	}
	write(base)
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.assumed[ref]
	if a == nil {
		a = &assumption{}
	}
	a.vm = base
	now := c.opts.Now()
	for _, f := range fields {
		a.until[f], a.since[f] = now.Add(c.opts.AssumeFor), now
		if ok && !untilPolled[f] && reflect.DeepEqual(vmFields[f].get(cached), vmFields[f].get(base)) {
			a.until[f] = time.Time{} // the cache shows it already
		}
	}
	live := false
	for f := range fieldCount {
		if !now.Before(a.until[f]) {
			a.until[f] = time.Time{}
		}
		live = live || !a.until[f].IsZero()
	}
	if live {
		c.assumed[ref] = a
	} else {
		delete(c.assumed, ref)
	}
}

// settle drops the assumptions about ref that the cache now shows (or that
// expired), and the expectation of ref once it arrived.
func (c *Cache) settle(ref string, cached *xenapi.VM) {
	var wake []string
	c.mu.Lock()
	if a := c.assumed[ref]; a != nil {
		now, live := c.opts.Now(), false
		for f := range fieldCount {
			if a.until[f].IsZero() {
				continue
			}
			if cached == nil || now.After(a.until[f]) ||
				!untilPolled[f] && reflect.DeepEqual(vmFields[f].get(cached), vmFields[f].get(a.vm)) {
				a.until[f] = time.Time{}
				continue
			}
			live = true
		}
		if !live {
			delete(c.assumed, ref)
		}
	}
	if cached != nil {
		for key, e := range c.expected {
			if e.ref == ref {
				delete(c.expected, key)
				wake = append(wake, e.owner)
			}
		}
	}
	c.mu.Unlock()
	for _, o := range wake {
		c.wake(o)
	}
}

// caughtUp is told that every event of an event.from call made at polled
// has been applied: the cache now shows each VM as xapi had it after then.
// An assumption made before then is over even if the cache shows another
// value: xapi coalesces an object's changes, so when another tool changes a
// field right after this process wrote it, the stream never shows this
// process's value, and value equality alone would hide the other tool's
// change for AssumeFor. The owners of the VMs whose reads change are woken.
func (c *Cache) caughtUp(polled time.Time) {
	var woken []string
	c.mu.Lock()
	now := c.opts.Now()
	for ref, a := range c.assumed {
		live, changed := false, false
		for f := range fieldCount {
			if a.until[f].IsZero() {
				continue
			}
			if a.since[f].Before(polled) {
				changed = changed || now.Before(a.until[f])
				a.until[f] = time.Time{}
				continue
			}
			live = true
		}
		if !live {
			delete(c.assumed, ref)
		}
		if changed {
			woken = append(woken, ref)
		}
	}
	c.mu.Unlock()
	for _, ref := range woken {
		c.wakeVM(ref)
	}
}

// ExpectVM records that this process created the VM ref, known to its
// caller as key (for the operator: the install name), for owner: Expected
// finds it until the cache sees it, and owner is woken when it does.
func (c *Cache) ExpectVM(key, ref, owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The store under c.mu: the VM's event, stored after this read, settles
	// the expectation (settle takes c.mu); stored before it, it is seen here.
	if _, ok := c.VMs.Get(ref); ok {
		return
	}
	c.expected[key] = &expectation{ref: ref, owner: owner, until: c.opts.Now().Add(c.opts.AssumeFor)}
}

// Expected returns the ref of a VM created as key that the cache has not
// seen yet. After Options.AssumeFor the expectation lapses: the caller asks
// xapi.
func (c *Cache) Expected(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.expected[key]
	if e == nil {
		return "", false
	}
	if c.opts.Now().After(e.until) {
		delete(c.expected, key)
		return "", false
	}
	return e.ref, true
}

// TaskState is what the cache knows of a tracked task.
type TaskState int

// The task states.
const (
	// TaskUnknown: the cache has not seen the task (yet).
	TaskUnknown TaskState = iota
	// TaskKnown: the cache has the task's record.
	TaskKnown
	// TaskGone: the task existed and xapi no longer has it (destroyed,
	// collected, or missing from a full sync after xapi restarted).
	TaskGone
	// TaskDone: this process finished with the task (ForgetTask) lately.
	TaskDone
)

// TrackTask wakes owner whenever the task changes or goes, and tells Task
// that it is gone once it is. note is the caller's (for the operator: the
// operation the task runs), returned by TrackedFor. Tracking again keeps the
// first time.
func (c *Cache) TrackTask(ref, owner, note string) {
	c.mu.Lock()
	if c.isDone(ref) {
		c.mu.Unlock()
		return
	}
	if t := c.tracked[ref]; t != nil {
		t.owner, t.note = owner, note
		c.mu.Unlock()
		return
	}
	c.tracked[ref] = &trackedTask{owner: owner, note: note, since: c.opts.Now()}
	c.mu.Unlock()
	// A task that failed at once can end, and its event arrive, before it
	// is tracked: then nothing else wakes its owner.
	if t, ok := c.Tasks.Get(ref); ok && t.Status != xenapi.TaskPending {
		c.wake(owner)
	}
}

// TrackedFor returns the task most recently tracked for owner: what this
// process began for it even where its own records do not show it yet.
func (c *Cache) TrackedFor(owner string) (ref, note string, since time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for r, t := range c.tracked {
		if t.owner == owner && (!ok || t.since.After(since)) {
			ref, note, since, ok = r, t.note, t.since, true
		}
	}
	return ref, note, since, ok
}

// ForgetTask stops tracking a task this process is done with: for
// Options.AssumeFor, Task reports it TaskDone, and tracking it again (from a
// stale record of the caller's) does nothing.
func (c *Cache) ForgetTask(ref string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tracked, ref)
	now := c.opts.Now()
	for r, at := range c.finished {
		if now.Sub(at) > c.opts.AssumeFor {
			delete(c.finished, r)
		}
	}
	c.finished[ref] = now
}

// isDone tells whether this process forgot ref lately. Called with c.mu held.
func (c *Cache) isDone(ref string) bool {
	at, ok := c.finished[ref]
	return ok && c.opts.Now().Sub(at) <= c.opts.AssumeFor
}

// Task returns what the cache knows of a task, and for a task it has not
// seen, how long it has been tracked without news (0 if untracked).
func (c *Cache) Task(ref string) (*xenapi.Task, TaskState, time.Duration) {
	c.mu.Lock()
	done := c.isDone(ref)
	c.mu.Unlock()
	if done {
		return nil, TaskDone, 0
	}
	if t, ok := c.Tasks.Get(ref); ok {
		return t, TaskKnown, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tracked[ref]
	switch {
	case t == nil:
		return nil, TaskUnknown, 0
	case t.gone:
		return nil, TaskGone, 0
	default:
		return nil, TaskUnknown, c.opts.Now().Sub(t.since)
	}
}

// taskChanged records a tracked task's news and wakes its owner when the
// task ended or went: progress alone wakes nobody (an owner looks at it on
// its own schedule), so that a long operation costs no reconcile per step.
func (c *Cache) taskChanged(ref string, task *xenapi.Task) {
	owner := ""
	c.mu.Lock()
	if t := c.tracked[ref]; t != nil {
		t.gone = task == nil
		if task == nil || task.Status != xenapi.TaskPending {
			owner = t.owner
		}
	}
	c.mu.Unlock()
	c.wake(owner)
}

// sweepTracked ends a full resync for the tracked tasks the cache never
// saw: one tracked before the resync was asked for existed then (its caller
// created it), so a resync that does not mention it means it is gone.
func (c *Cache) sweepTracked() {
	var wake []string
	c.mu.Lock()
	for ref, t := range c.tracked {
		if _, seen := c.seen[xenapi.ClassTask][ref]; !seen && !t.gone && t.since.Before(c.resyncAsked) {
			t.gone = true
			wake = append(wake, t.owner)
		}
	}
	c.mu.Unlock()
	for _, o := range wake {
		c.wake(o)
	}
}

// TrackedTasks lists the tracked tasks, sorted (for tests and diagnostics).
func (c *Cache) TrackedTasks() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.tracked))
}
