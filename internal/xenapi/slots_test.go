package xenapi

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestSlotsPreferNormalPriority(t *testing.T) {
	g := NewWithT(t)
	s := newSlots(1)
	ctx := context.Background()
	g.Expect(s.acquire(ctx, false)).To(Succeed())

	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	wait := func(name string, low bool) {
		defer wg.Done()
		g.Expect(s.acquire(ctx, low)).To(Succeed())
		mu.Lock()
		order = append(order, name)
		mu.Unlock()
		s.release()
	}
	wg.Add(3)
	go wait("clone-1", true)
	time.Sleep(20 * time.Millisecond)
	go wait("clone-2", true)
	time.Sleep(20 * time.Millisecond)
	go wait("start", false)
	time.Sleep(20 * time.Millisecond)
	s.release()
	wg.Wait()
	g.Expect(order).To(Equal([]string{"start", "clone-1", "clone-2"}))
}

func TestSlotsCancelledWaiterGivesNothingAway(t *testing.T) {
	g := NewWithT(t)
	s := newSlots(1)
	g.Expect(s.acquire(context.Background(), false)).To(Succeed())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	g.Expect(s.acquire(ctx, true)).To(MatchError(context.DeadlineExceeded))
	s.release()
	g.Expect(s.free).To(Equal(1), "the slot is free again, not lost")
	g.Expect(s.low).To(BeEmpty())
}
