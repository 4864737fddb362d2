package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
)

const (
	// hostFinalizer releases a XenHost's session when it is deleted.
	hostFinalizer = "virt.xen-operator.io/xenhost"
	// vmFinalizer shuts down and destroys (or releases) a XenVM's VM.
	vmFinalizer = "virt.xen-operator.io/xenvm"

	indexHostRef   = "spec.hostRef.name"
	indexSecretRef = "spec.secretRefs" //nolint:gosec // a field index name, not a credential
)

// How long the controllers wait before looking again, in one place. Events
// (the XenAPI event stream, the watched objects) usually come first; these
// are the fallbacks.
const (
	// requeueCacheLag: a write's or a clone's event is on its way.
	requeueCacheLag = 2 * time.Second
	// requeueBusy: another operation runs on the VM.
	requeueBusy = time.Second
	// requeueWaitingForRoom: an install waits in line for room on the pool;
	// room wakes it.
	requeueWaitingForRoom = 30 * time.Second
	// requeueOperation: an operation runs; its task's events wake the XenVM.
	requeueOperation = 30 * time.Second
	// requeueConnecting: a XenHost's cache is syncing; its sync wakes the XenVMs.
	requeueConnecting = 5 * time.Second
	// requeueHostRefresh: a healthy XenHost is looked at again (no call:
	// the event stream reports host changes).
	requeueHostRefresh = 5 * time.Minute
	// requeuePoolProblem: a problem of the pool's configuration (no default
	// SR, no such template); pool changes wake the XenVMs first.
	requeuePoolProblem = time.Minute
	// taskSilence: how long a task may stay without any event before xapi
	// is asked about it directly.
	taskSilence = 30 * time.Second
)

// failureBackoff is how the wait after a failed XenAPI call grows, per
// object: 10s doubling to 5 minutes. A VM that can never start makes five
// attempts (ten calls) in its first five minutes, then one every five.
var failureBackoff = wait.Backoff{Duration: 10 * time.Second, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: 5 * time.Minute}

func setCondition(conds *[]metav1.Condition, generation int64, typ string, status metav1.ConditionStatus, reason, format string, args ...any) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: fmt.Sprintf(format, args...), ObservedGeneration: generation,
	})
}

// patchStatus writes obj's status if it differs from before's: the one
// status write of a reconcile, deferred.
func patchStatus(ctx context.Context, c client.Client, before, obj client.Object, statusOf func(client.Object) any) error {
	old := statusOf(before)
	if equality.Semantic.DeepEqual(old, statusOf(obj)) {
		return nil
	}
	return client.IgnoreNotFound(c.Status().Patch(ctx, obj, statusFrom{before: old, statusOf: statusOf}))
}

// The statuses patchStatus compares and writes, one per kind.
func xenVMStatus(o client.Object) any    { return o.(*virtv1alpha1.XenVM).Status }
func xenHostStatus(o client.Object) any  { return o.(*virtv1alpha1.XenHost).Status }
func snapshotStatus(o client.Object) any { return o.(*virtv1alpha1.XenVMSnapshot).Status }

// statusFrom is a JSON merge patch (RFC 7386) of an object's status alone,
// made from the status before and after: what client.MergeFrom sends to the
// status subresource (which ignores the rest of the object), without
// marshalling and diffing the spec and metadata on every write, and without
// decoding either status into maps of interfaces (mergeDiff).
type statusFrom struct {
	before   any
	statusOf func(client.Object) any
}

func (p statusFrom) Type() types.PatchType { return types.MergePatchType }

func (p statusFrom) Data(obj client.Object) ([]byte, error) {
	before, err := json.Marshal(p.before)
	if err != nil {
		return nil, err
	}
	after, err := json.Marshal(p.statusOf(obj))
	if err != nil {
		return nil, err
	}
	diff, err := mergeDiff(before, after)
	if err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		Status json.RawMessage `json:"status"`
	}{diff})
}

// mergeDiff is the merge patch that turns the JSON document before into
// after: an object's members that differ, recursively, with null for the
// ones after leaves out; anything else (a list, a string) whole. Both come
// from encoding/json, which writes equal values as equal bytes (struct
// fields in order, map keys sorted), so members are compared as bytes.
func mergeDiff(before, after json.RawMessage) (json.RawMessage, error) {
	if !isObject(before) || !isObject(after) {
		return after, nil
	}
	var b, a map[string]json.RawMessage
	if err := json.Unmarshal(before, &b); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(after, &a); err != nil {
		return nil, err
	}
	patch := make(map[string]json.RawMessage, len(a))
	for k, av := range a {
		bv, ok := b[k]
		switch {
		case !ok:
			patch[k] = av
		case !bytes.Equal(av, bv):
			d, err := mergeDiff(bv, av)
			if err != nil {
				return nil, err
			}
			patch[k] = d
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			patch[k] = json.RawMessage("null")
		}
	}
	return json.Marshal(patch)
}

// isObject tells a JSON object from other values; encoding/json writes
// them without leading space.
func isObject(doc json.RawMessage) bool { return len(doc) > 0 && doc[0] == '{' }

// selects tells whether a selector (nil: everything) matches a XenHost's labels.
func selects(sel labels.Selector, l map[string]string) bool {
	return sel == nil || sel.Matches(labels.Set(l))
}

// phase is one step of a reconcile. Phases run in order; each checks what
// it needs on its scope and returns a zero result when it has nothing to do.
type phase[S scope] func(ctx context.Context, s S) (ctrl.Result, error)

// scope is what a reconcile's phases share; a phase stops the ones after it
// through it.
type scope interface{ done() bool }

// runPhases runs phases in order until one fails or stops the reconcile, and
// merges their results in one place: the soonest requeue wins.
func runPhases[S scope](ctx context.Context, s S, phases ...phase[S]) (ctrl.Result, error) {
	var res ctrl.Result
	for _, p := range phases {
		r, err := p(ctx, s)
		res = soonest(res, r)
		if err != nil || s.done() {
			return res, err
		}
	}
	return res, nil
}

// soonest merges two results: the earlier non-zero requeue.
func soonest(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0 || a.RequeueAfter < b.RequeueAfter:
		return a
	}
	return b
}

// failures remembers, per object, the XenAPI calls that failed and when to
// try again: a failing operation costs a few calls a minute, not a storm.
// Success, or a new generation of the object, starts over.
type failures struct {
	mu      sync.Mutex
	records map[types.UID]*failure
	backoff wait.Backoff
	now     func() time.Time
}

type failure struct {
	backoff    wait.Backoff
	generation int64
	next       time.Time
	err        string
}

func newFailures(b wait.Backoff) *failures {
	return &failures{records: map[types.UID]*failure{}, backoff: b, now: time.Now}
}

// wait returns how long obj is still to wait after its last failure, and
// that failure, or 0 when it may try now.
func (f *failures) wait(uid types.UID, generation int64) (time.Duration, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.records[uid]
	if r == nil {
		return 0, ""
	}
	if r.generation != generation {
		delete(f.records, uid) // the spec changed: try at once
		return 0, ""
	}
	return max(r.next.Sub(f.now()), 0), r.err
}

// failed records a failure of obj and returns how long to wait.
func (f *failures) failed(uid types.UID, generation int64, err error) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.records[uid]
	if r == nil || r.generation != generation {
		r = &failure{backoff: f.backoff, generation: generation}
		f.records[uid] = r
	}
	d := r.backoff.Step()
	r.next, r.err = f.now().Add(d), err.Error()
	return d
}

// succeeded forgets obj's failures.
func (f *failures) succeeded(uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.records, uid)
}

// retryNote is what a condition says of the next attempt after a failure.
func retryNote(d time.Duration, now time.Time) string {
	return fmt.Sprintf("retrying in %s (at %s)", d.Round(time.Second), now.Add(d).UTC().Format(time.RFC3339))
}

// indexed lists the objects of o's namespace that an index of the cache
// holds under o's name (list is an empty list of their kind), as requests:
// how a watched object wakes the objects that name it.
func indexed(ctx context.Context, c client.Reader, list client.ObjectList, o client.Object, index string) []reconcile.Request {
	if err := c.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: o.GetName()}); err != nil {
		return nil
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(items))
	for _, item := range items {
		if obj, ok := item.(client.Object); ok {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		}
	}
	return out
}
