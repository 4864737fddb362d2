package cache

import (
	"strings"
	"testing"
	"time"
	"unsafe"

	. "github.com/onsi/gomega"

	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// The cache keeps what its readers use, the repeated values once, and
// leaves the event's record (which other subscribers share) as it came.
func TestCacheKeepsSlimCopies(t *testing.T) {
	g := NewWithT(t)
	c := New((&recorder{}).options(time.Now))
	a := vm("OpaqueRef:a", "uuid-a", "ns/a")
	a.AllowedOperations = []string{"start", "clone", "destroy"}
	a.OtherConfig["base_template_name"] = "Debian Bookworm 12"
	b := vm("OpaqueRef:b", "uuid-b", "ns/b")
	b.OtherConfig["base_template_name"] = strings.Clone("Debian Bookworm 12") // not the same bytes as a's
	c.Apply(add(a))
	c.Apply(add(b))

	got, ok := c.VM("OpaqueRef:a")
	g.Expect(ok).To(BeTrue())
	g.Expect(got.AllowedOperations).To(BeNil(), "no reader uses a VM's allowed operations")
	g.Expect(got.OtherConfig).To(Equal(a.OtherConfig))
	g.Expect(a.AllowedOperations).To(HaveLen(3), "the event's record is not changed")
	gb, _ := c.VM("OpaqueRef:b")
	g.Expect(unsafeData(got.OtherConfig["base_template_name"])).To(Equal(unsafeData(gb.OtherConfig["base_template_name"])),
		"a value every clone repeats is kept once")

	gm := &xenapi.GuestMetrics{Ref: "OpaqueRef:gm", Networks: map[string]string{"0/ip": "10.0.0.1"},
		OSVersion: map[string]string{"name": "Debian"}, Other: map[string]string{"feature-shutdown": "1"}}
	c.Apply(add(gm))
	gg, ok := c.GuestMetrics.Get("OpaqueRef:gm")
	g.Expect(ok).To(BeTrue())
	g.Expect(gg.Networks).To(Equal(gm.Networks))
	g.Expect(gg.OSVersion).To(BeNil())
	g.Expect(gg.Other).To(BeNil())
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }
