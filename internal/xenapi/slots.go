package xenapi

import (
	"context"
	"sync"
)

// slots caps the operations in flight on an endpoint. Waiters of normal
// priority go before low-priority ones (new VMs' clones), so that VMs already
// on their way finish before more are started: at scale this turns "clone
// everything, then start everything" into a pipeline.
type slots struct {
	mu       sync.Mutex
	capacity int
	free     int
	// high and low are the waiters, first come first served within each.
	high, low []chan struct{}
}

func newSlots(n int) *slots { return &slots{capacity: n, free: n} }

// acquire takes a slot, waiting behind every waiter of the same or higher
// priority.
func (s *slots) acquire(ctx context.Context, low bool) error {
	s.mu.Lock()
	if s.free > 0 && len(s.high) == 0 && (!low || len(s.low) == 0) {
		s.free--
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if low {
		s.low = append(s.low, ch)
	} else {
		s.high = append(s.high, ch)
	}
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		removed := remove(&s.high, ch) || remove(&s.low, ch)
		s.mu.Unlock()
		if !removed {
			// The slot was handed over as the context ended: pass it on.
			s.release()
		}
		return ctx.Err()
	}
}

// LowQueue is how many low-priority callers may wait in line: enough to use
// a freed slot at once, few enough not to tie up the callers' workers.
const LowQueue = 4

// saturated tells whether a new low-priority caller would wait behind a full line.
func (s *slots) saturated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.low) >= LowQueue
}

// release gives a slot back, to the first waiter of the highest priority.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(s.high) > 0:
		close(s.high[0])
		s.high = s.high[1:]
	case len(s.low) > 0:
		close(s.low[0])
		s.low = s.low[1:]
	default:
		s.free++
	}
}

func remove(q *[]chan struct{}, ch chan struct{}) bool {
	for i, c := range *q {
		if c == ch {
			*q = append((*q)[:i], (*q)[i+1:]...)
			return true
		}
	}
	return false
}
