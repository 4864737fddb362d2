package vmservice

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// TestLookupsNeverMissACloneOnItsWay: a reconcile looks for its owner's VM
// while the clone's event (or a snapshot's, or the one that shows the
// clone tagged and renamed) is applied. The clone is known from its
// expectation until the cache shows it, and from the cache after, under its
// install name, its tag or both: a lookup must find it at every step. One
// that read the indexes before the event was stored and the expectation
// after the event dropped it (or the tag's index before and the install
// name's after) found nothing, and the reconcile would clone again.
func TestLookupsNeverMissACloneOnItsWay(t *testing.T) {
	g := NewWithT(t)
	c := cache.New(CacheOptions(func(string) {}, &Observers{}))
	c.Apply(xenapi.Event{Op: xenapi.OpSynced})
	o := Owner{UID: "uid-1", Namespace: "ns", Name: "web"}

	var missed atomic.Int64
	race := func(lookup func() bool, expect func(ref string), event func(ref string) *xenapi.VM) {
		for i := range 3000 {
			ref := fmt.Sprintf("OpaqueRef:%d", i)
			expect(ref)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					for {
						if !lookup() {
							missed.Add(1)
						}
						select {
						case <-stop:
							return
						default:
						}
					}
				})
			}
			vm := event(ref)
			c.Apply(xenapi.Event{Class: xenapi.ClassVM, Op: xenapi.OpMod, Ref: ref, Object: vm})
			close(stop)
			wg.Wait()
			c.Apply(xenapi.Event{Class: xenapi.ClassVM, Op: xenapi.OpDel, Ref: ref})
		}
	}

	race(func() bool { return len(Owned(c, o)) == 1 },
		func(ref string) { c.ExpectVM(o.InstallName(), ref, o.Key()) },
		func(ref string) *xenapi.VM {
			return &xenapi.VM{Ref: ref, UUID: ref + "-uuid", NameLabel: o.InstallName(), IsTemplate: true, OtherConfig: map[string]string{}}
		})
	g.Expect(missed.Load()).To(BeZero(), "lookups of the clone that found no VM")

	// The clone in the cache with its install name; one record brings its
	// tag and its new name together (xapi coalesces the claim and the
	// rename when both land between two polls).
	race(func() bool { return len(Owned(c, o)) == 1 },
		func(ref string) {
			c.Apply(xenapi.Event{Class: xenapi.ClassVM, Op: xenapi.OpAdd, Ref: ref, Object: &xenapi.VM{Ref: ref, UUID: ref + "-uuid",
				NameLabel: o.InstallName(), IsTemplate: true, OtherConfig: map[string]string{}}})
		},
		func(ref string) *xenapi.VM {
			return &xenapi.VM{Ref: ref, UUID: ref + "-uuid", NameLabel: "web", OtherConfig: map[string]string{TagUID: o.UID, TagOwner: o.Key()}}
		})
	g.Expect(missed.Load()).To(BeZero(), "lookups of the VM tagged and renamed at once that found none")

	race(func() bool { _, ok := SnapshotOf(c, o); return ok },
		func(ref string) { c.ExpectVM(o.SnapshotName(), ref, SnapshotWakePrefix+o.Key()) },
		func(ref string) *xenapi.VM {
			return &xenapi.VM{Ref: ref, UUID: ref + "-uuid", NameLabel: o.SnapshotName(), IsSnapshot: true, IsTemplate: true,
				OtherConfig: map[string]string{TagSnapshotUID: o.UID, TagSnapshotOwner: o.Key()}}
		})
	g.Expect(missed.Load()).To(BeZero(), "lookups of the snapshot that found none")
}
