package vmservice

import (
	"container/list"
	"time"
)

// line is the first-come-first-served line of owners CanInstall turned
// away. Only its head is ever looked at (the owners the free room can take,
// at most the pool's operation cap plus a few), so asking is O(room), not
// O(owners in line): with ten thousand new XenVMs most of them wait here.
type line struct {
	order *list.List // of *waiter, front first
	at    map[string]*list.Element
}

type waiter struct {
	owner Owner
	asked time.Time
}

func newLine() *line { return &line{order: list.New(), at: map[string]*list.Element{}} }

// head returns the first n owners of the line that asked within waiterExpiry,
// dropping the ones before them that stopped asking (they were deleted: an
// owner in line asks again at least every 30 s). Owners further back that
// stopped asking are dropped once they reach the head.
func (l *line) head(n int, now time.Time) []*waiter {
	var out []*waiter
	for e := l.order.Front(); e != nil && len(out) < n; {
		w, next := e.Value.(*waiter), e.Next()
		if now.Sub(w.asked) > waiterExpiry {
			l.order.Remove(e)
			delete(l.at, w.owner.UID)
		} else {
			out = append(out, w)
		}
		e = next
	}
	return out
}

// find returns uid's place in the line, nil when it is not in it.
func (l *line) find(uid string) *waiter {
	if e := l.at[uid]; e != nil {
		return e.Value.(*waiter)
	}
	return nil
}

// join puts o at the back of the line, or records that it asked again.
func (l *line) join(o Owner, now time.Time) {
	if e := l.at[o.UID]; e != nil {
		e.Value.(*waiter).asked = now
		return
	}
	l.at[o.UID] = l.order.PushBack(&waiter{owner: o, asked: now})
}

// leave takes uid out of the line.
func (l *line) leave(uid string) {
	if e := l.at[uid]; e != nil {
		l.order.Remove(e)
		delete(l.at, uid)
	}
}
