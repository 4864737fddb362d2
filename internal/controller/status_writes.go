package controller

import (
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
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
