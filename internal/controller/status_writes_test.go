package controller

import (
	"testing"

	. "github.com/onsi/gomega"
)

// A reconcile that runs before the informer shows its last status write
// starts from that write; once the cache shows it (or a later version), the
// cached object is what counts again.
func TestStatusWritesOverrideOnlyOlderCopies(t *testing.T) {
	g := NewWithT(t)
	w := newStatusWrites[string]()
	w.record("a", "120", "starting")

	for _, tc := range []struct {
		cached string
		want   string
		ok     bool
	}{
		{cached: "100", want: "starting", ok: true}, // the cache lags: our write wins
		{cached: "119", want: "starting", ok: true},
		{cached: "120", ok: false}, // caught up: the record goes
		{cached: "100", ok: false}, // and does not come back
	} {
		got, ok := w.newer("a", tc.cached)
		g.Expect(ok).To(Equal(tc.ok), "cached at %s", tc.cached)
		g.Expect(got).To(Equal(tc.want))
	}

	_, ok := w.newer("b", "1")
	g.Expect(ok).To(BeFalse(), "nothing written for b")
	w.record("c", "not-a-number", "x")
	_, ok = w.newer("c", "1")
	g.Expect(ok).To(BeFalse(), "versions that are not revisions are never compared")
}
