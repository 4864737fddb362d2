package cache

import (
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
)

type item struct{ ref, uuid, host string }

func newItems() *Store[*item] {
	return newStore(func(i *item) string { return i.ref }, map[string]IndexFunc[*item]{
		IndexUUID: func(i *item) []string { return []string{i.uuid} },
		"host":    func(i *item) []string { return nonEmpty(i.host) },
	})
}

func TestStoreIndexesFollowPutsAndRemoves(t *testing.T) {
	g := NewWithT(t)
	s := newItems()
	g.Expect(s.ByIndex("host", "h1")).To(BeEmpty())
	for i := range 3 {
		s.put(&item{ref: fmt.Sprint("r", i), uuid: fmt.Sprint("u", i), host: "h1"})
	}
	g.Expect(s.Len()).To(Equal(3))
	g.Expect(s.CountByIndex("host", "h1")).To(Equal(3))
	g.Expect(s.ByIndex(IndexUUID, "u1")).To(ConsistOf(&item{"r1", "u1", "h1"}))

	// An update moves the object between values; the old value forgets it.
	s.put(&item{ref: "r1", uuid: "u1", host: "h2"})
	g.Expect(s.ByIndex("host", "h1")).To(ConsistOf(&item{"r0", "u0", "h1"}, &item{"r2", "u2", "h1"}))
	g.Expect(s.ByIndex("host", "h2")).To(ConsistOf(&item{"r1", "u1", "h2"}))
	g.Expect(s.CountByIndex("host", "h2")).To(Equal(1))

	// A set back to one ref, then none; an index value without refs goes.
	_, ok := s.remove("r0")
	g.Expect(ok).To(BeTrue())
	g.Expect(s.indexes["host"].values["h1"]).To(Equal(bucket{one: "r2"}))
	s.put(&item{ref: "r2", uuid: "u2"})
	g.Expect(s.indexes["host"].values).NotTo(HaveKey("h1"))
	g.Expect(s.ByIndex("host", "h1")).To(BeEmpty())
	g.Expect(s.CountByIndex("host", "h1")).To(BeZero())
	_, ok = s.remove("r0")
	g.Expect(ok).To(BeFalse(), "removed twice")

	s.remove("r1")
	s.remove("r2")
	g.Expect(s.Len()).To(BeZero())
	g.Expect(s.refs()).To(BeEmpty())
	for name, ix := range s.indexes {
		g.Expect(ix.values).To(BeEmpty(), "index %s keeps nothing of removed objects", name)
	}
	g.Expect(func() { s.ByIndex("nope", "x") }).To(Panic())
}

func TestStoreValueIndexedTwiceByOneObject(t *testing.T) {
	g := NewWithT(t)
	s := newStore(func(i *item) string { return i.ref }, map[string]IndexFunc[*item]{
		"both": func(i *item) []string { return []string{i.uuid, i.uuid} },
	})
	s.put(&item{ref: "r", uuid: "u"})
	g.Expect(s.CountByIndex("both", "u")).To(Equal(1))
	s.remove("r")
	g.Expect(s.indexes["both"].values).To(BeEmpty())
}

// BenchmarkStoreVMs puts ten thousand VMs indexed as the cache indexes
// them, to measure the indexes' memory (B/op).
func BenchmarkStoreVMs(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		s := newItems()
		for i := range 10000 {
			s.put(&item{ref: fmt.Sprint("OpaqueRef:", i), uuid: fmt.Sprint("uuid-", i), host: "h1"})
		}
	}
}
