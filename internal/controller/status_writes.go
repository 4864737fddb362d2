package controller

import (
	"context"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
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
type statusWrites[T any] struct {
	mu    sync.Mutex
	byUID map[types.UID]statusWrite[T]
	swept time.Time
}

type statusWrite[T any] struct {
	version uint64
	status  T
	at      time.Time
}

// forgetWritesAfter bounds how long a write is remembered: the informer
// shows it long before; an object deleted meanwhile is dropped with it.
const forgetWritesAfter = time.Minute

func newStatusWrites[T any]() *statusWrites[T] {
	return &statusWrites[T]{byUID: map[types.UID]statusWrite[T]{}}
}

// record notes a status written with the resourceVersion of the answer.
func (w *statusWrites[T]) record(uid types.UID, resourceVersion string, status T) {
	v, err := strconv.ParseUint(resourceVersion, 10, 64)
	if err != nil {
		return // not an etcd revision: nothing to compare with
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.byUID[uid] = statusWrite[T]{version: v, status: status, at: now}
	if now.Sub(w.swept) > forgetWritesAfter {
		w.swept = now
		for k, e := range w.byUID {
			if now.Sub(e.at) > forgetWritesAfter {
				delete(w.byUID, k)
			}
		}
	}
}

// newer returns the status last written for uid when the cached object,
// at resourceVersion, does not show it yet; once it does, the record goes.
func (w *statusWrites[T]) newer(uid types.UID, resourceVersion string) (T, bool) {
	var zero T
	v, err := strconv.ParseUint(resourceVersion, 10, 64)
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.byUID[uid]
	switch {
	case !ok:
		return zero, false
	case err != nil || v >= e.version || time.Since(e.at) > forgetWritesAfter:
		delete(w.byUID, uid)
		return zero, false
	}
	return e.status, true
}

// shown drops the write remembered for uid once the informer shows its
// version or a later one.
func (w *statusWrites[T]) shown(uid types.UID, resourceVersion string) {
	v, err := strconv.ParseUint(resourceVersion, 10, 64)
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.byUID[uid]; ok && (err != nil || v >= e.version) {
		delete(w.byUID, uid)
	}
}

// forget drops the write remembered for uid: the object is gone.
func (w *statusWrites[T]) forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.byUID, uid)
}

// shownWrites is a statusWrites of any status type.
type shownWrites interface {
	shown(uid types.UID, resourceVersion string)
	forget(uid types.UID)
}

// writesShown is a watch handler that enqueues nothing: as the informer
// shows each update of an object, it drops the writes remembered for it
// that the update shows, and all of them once the object is gone. Without
// it, the last write of each object, which no reconcile follows, was kept
// until the sweep a minute later: some 10 MB of statuses when ten thousand
// XenVMs are installed at once.
func writesShown(writes ...shownWrites) handler.EventHandler {
	return handler.Funcs{
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			for _, w := range writes {
				w.shown(e.ObjectNew.GetUID(), e.ObjectNew.GetResourceVersion())
			}
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			for _, w := range writes {
				w.forget(e.Object.GetUID())
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
