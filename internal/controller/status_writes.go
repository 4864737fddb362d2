package controller

import (
	"context"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// statusWrites remembers the status each object's last patch wrote, with
// the resourceVersion the API server answered, until the informer shows
// that version. A reconcile that runs before then (its object's event is
// still on its way, as under load it often is) starts from what was
// written, not from the older cached status: diffed against the older
// copy, its patch would repeat changes the server already has, and could
// not clear a field the cache does not show yet (a stale status.operation
// stayed behind that way and held back the reaction to the next
// out-of-band change by the task silence).
//
// A reconcile takes the write pending for its object (pending) before it
// reads the object from the cache, and compares them after (newer): the
// informer drops a write (shown) only once its store holds that version,
// so a write gone before the read is one the read shows, and a write
// dropped between the two is still in the reconcile's hands.
type statusWrites[T any] struct {
	mu    sync.Mutex
	byKey map[types.NamespacedName]statusWrite[T]
	swept time.Time
}

// statusWrite is one remembered write: the object's UID (a namesake
// created since is another object), the version written, the status.
type statusWrite[T any] struct {
	uid     types.UID
	version uint64
	status  T
	at      time.Time
}

// forgetWritesAfter bounds how long a write is remembered when the
// informer never shows it (the object was deleted meanwhile, or updated
// out of its selector).
const forgetWritesAfter = time.Minute

func newStatusWrites[T any]() *statusWrites[T] {
	return &statusWrites[T]{byKey: map[types.NamespacedName]statusWrite[T]{}}
}

// record notes the status written to obj, at the resourceVersion of the
// answer obj holds.
func (w *statusWrites[T]) record(obj client.Object, status T) {
	v, ok := revision(obj.GetResourceVersion())
	if !ok {
		return // not an etcd revision: nothing to compare with
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.byKey[client.ObjectKeyFromObject(obj)] = statusWrite[T]{uid: obj.GetUID(), version: v, status: status, at: now}
	if now.Sub(w.swept) > forgetWritesAfter {
		w.swept = now
		for k, e := range w.byKey {
			if now.Sub(e.at) > forgetWritesAfter {
				delete(w.byKey, k)
			}
		}
	}
}

// pending is the write remembered for key, taken before the reconcile
// reads the object (the zero statusWrite when there is none).
func (w *statusWrites[T]) pending(key types.NamespacedName) statusWrite[T] {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.byKey[key]
}

// newer returns the status of the write when obj, read from the cache,
// does not show it yet.
func (e statusWrite[T]) newer(obj client.Object) (T, bool) {
	v, ok := revision(obj.GetResourceVersion())
	if e.uid == "" || e.uid != obj.GetUID() || !ok || v >= e.version || time.Since(e.at) > forgetWritesAfter {
		var zero T
		return zero, false
	}
	return e.status, true
}

// shown drops the write remembered for obj once the informer's store holds
// its version or a later one.
func (w *statusWrites[T]) shown(obj client.Object) {
	v, ok := revision(obj.GetResourceVersion())
	key := client.ObjectKeyFromObject(obj)
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, found := w.byKey[key]; found && (e.uid != obj.GetUID() || !ok || v >= e.version) {
		delete(w.byKey, key)
	}
}

// forget drops the write remembered for obj: the object is gone.
func (w *statusWrites[T]) forget(obj client.Object) {
	key := client.ObjectKeyFromObject(obj)
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, found := w.byKey[key]; found && e.uid == obj.GetUID() {
		delete(w.byKey, key)
	}
}

// revision is a resourceVersion as the etcd revision it is, when it is one.
func revision(resourceVersion string) (uint64, bool) {
	v, err := strconv.ParseUint(resourceVersion, 10, 64)
	return v, err == nil
}

// shownWrites is a statusWrites of any status type.
type shownWrites interface {
	shown(obj client.Object)
	forget(obj client.Object)
}

// writesShown is a watch handler that enqueues nothing: as the informer
// shows each update of an object (its store already holds it when the
// handler runs), it drops the writes remembered for it that the update
// shows, and all of them once the object is gone. Without it, the last
// write of each object, which no reconcile follows, was kept until the
// sweep a minute later: some 10 MB of statuses when ten thousand XenVMs
// are installed at once.
func writesShown(writes ...shownWrites) handler.EventHandler {
	return handler.Funcs{
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			for _, w := range writes {
				w.shown(e.ObjectNew)
			}
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			for _, w := range writes {
				w.forget(e.Object)
			}
		},
	}
}

// statusRefresh paces the status writes whose only change is a counter
// that moves with the guests (a XenHost's residentVMs; a XenVM operation's
// progress and the devices it plugs), the way the kubelet paces a node's status: such a change goes
// out once period has passed since the object's last status write, while
// a change of state goes out at once, with the counters as they are then.
type statusRefresh struct {
	period time.Duration
	mu     sync.Mutex
	last   map[types.UID]time.Time
	swept  time.Time
}

// volatileStatusPeriod is how often at most a status change of counters
// alone is written.
const volatileStatusPeriod = 10 * time.Second

func newStatusRefresh(period time.Duration) *statusRefresh {
	if period <= 0 {
		period = volatileStatusPeriod
	}
	return &statusRefresh{period: period, last: map[types.UID]time.Time{}}
}

// wait is how long uid's counters are still to wait: 0 when they may go out.
func (p *statusRefresh) wait(uid types.UID) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	last, ok := p.last[uid]
	if !ok {
		return 0
	}
	return max(p.period-time.Since(last), 0)
}

// wrote notes a status write of uid.
func (p *statusRefresh) wrote(uid types.UID) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last[uid] = now
	if now.Sub(p.swept) > p.period {
		p.swept = now
		for k, t := range p.last {
			if now.Sub(t) > p.period {
				delete(p.last, k)
			}
		}
	}
}

// pace holds back a status change of counters alone (setCounters copies
// the counters of one status into another) until its time: it puts the
// counters of before back into after and returns how long to wait, or 0
// when after goes out as it is.
func pace[T any, PT interface {
	*T
	DeepCopy() *T
}](p *statusRefresh, uid types.UID, before, after PT, setCounters func(dst, src PT)) time.Duration {
	if equality.Semantic.DeepEqual(before, after) {
		return 0
	}
	kept := PT(after.DeepCopy())
	setCounters(kept, before)
	if !equality.Semantic.DeepEqual(before, kept) {
		return 0 // a change of state: it goes out at once
	}
	d := p.wait(uid)
	if d > 0 {
		setCounters(after, before)
	}
	return d
}
