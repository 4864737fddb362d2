package vmservice

import (
	"fmt"
	"testing"
	"time"
)

func owners(ws []*waiter) []string {
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.owner.UID)
	}
	return out
}

func TestLineHeadFirstComeFirstServed(t *testing.T) {
	l, t0 := newLine(), time.Unix(1000, 0)
	for i := range 5 {
		l.join(Owner{UID: fmt.Sprint(i)}, t0)
	}
	l.join(Owner{UID: "1"}, t0.Add(time.Second)) // asking again keeps the place
	if got := owners(l.head(3, t0.Add(time.Second))); fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("head(3) = %v, want [0 1 2]", got)
	}
	l.leave("1")
	if got := owners(l.head(3, t0)); fmt.Sprint(got) != "[0 2 3]" {
		t.Fatalf("after 1 left, head(3) = %v, want [0 2 3]", got)
	}
	if l.find("1") != nil || l.find("2") == nil {
		t.Fatalf("find: 1 left the line, 2 is in it")
	}
	if got := l.head(0, t0); len(got) != 0 {
		t.Fatalf("head(0) = %v, want none", owners(got))
	}
}

func TestLineDropsOwnersThatStoppedAskingWhenTheyReachTheHead(t *testing.T) {
	l, t0 := newLine(), time.Unix(1000, 0)
	for i := range 6 {
		l.join(Owner{UID: fmt.Sprint(i)}, t0)
	}
	// 0, 1 and 4 stopped asking; the others asked again.
	later := t0.Add(2 * time.Minute)
	for _, uid := range []string{"2", "3", "5"} {
		l.join(Owner{UID: uid}, later)
	}
	if got := owners(l.head(1, later)); fmt.Sprint(got) != "[2]" {
		t.Fatalf("head(1) = %v, want [2]", got)
	}
	if l.find("0") != nil || l.find("1") != nil {
		t.Fatalf("the owners before the head that stopped asking are dropped")
	}
	if l.find("4") == nil {
		t.Fatalf("an owner behind the head is only dropped once it reaches it (asking stays O(head))")
	}
	if got := owners(l.head(3, later)); fmt.Sprint(got) != "[2 3 5]" {
		t.Fatalf("head(3) = %v, want [2 3 5]", got)
	}
	if l.find("4") != nil || l.order.Len() != 3 {
		t.Fatalf("4 reached the head and is dropped; the line holds 3, has %d", l.order.Len())
	}
}

// BenchmarkLineAsk is one owner asking at the back of a line of ten
// thousand with room for 68: the cost does not grow with the line.
func BenchmarkLineAsk(b *testing.B) {
	l, now := newLine(), time.Now()
	for i := range 10000 {
		l.join(Owner{UID: fmt.Sprint(i)}, now)
	}
	b.ResetTimer()
	for range b.N {
		l.head(68, now)
		_ = l.find("9999")
		l.join(Owner{UID: "9999"}, now)
	}
}
