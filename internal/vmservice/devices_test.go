package vmservice

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/xen-operator/xen-operator/internal/xapisim"
	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// installed installs a VM for o from a template and returns it as the cache
// shows it.
func (p *pool) installed(g Gomega, o Owner, template string) *xenapi.VM {
	ctx := context.Background()
	ref, err := p.svc.Clone(ctx, p.template(g, template), o)
	g.Expect(err).NotTo(HaveOccurred())
	vm := p.owned(g, o)
	sr, _ := p.cache.DefaultSR()
	g.Expect(p.svc.Claim(ctx, vm, o, nil, DiskPlan{DefaultSR: sr.UUID, RootSize: 12 << 30})).To(Succeed())
	vm, _ = p.cache.VM(ref)
	g.Expect(p.svc.Provision(ctx, vm, o)).To(Succeed())
	vm, _ = p.cache.VM(ref)
	return vm
}

func (p *pool) settle(g Gomega, o Owner) {
	g.Eventually(func() bool { return p.svc.Settled(o) }, 5*time.Second, 10*time.Millisecond).Should(BeTrue())
}

func TestDevicesOfAVM(t *testing.T) {
	g := NewWithT(t)
	p := newPool(t)
	ctx := context.Background()
	o := Owner{UID: "dev-uid", Namespace: "ns", Name: "db"}
	vm := p.installed(g, o, "Debian Bookworm 12")
	g.Expect(p.cache.VIFsOf(vm)).To(BeEmpty(), "a stock template brings no interface")
	var root []*xenapi.VBD
	g.Eventually(func() []*xenapi.VBD { root = p.cache.VBDsOf(vm); return root }, 5*time.Second).Should(HaveLen(1))
	var rootVDI *xenapi.VDI
	g.Eventually(func() (ok bool) { rootVDI, ok = p.cache.VDIs.Get(root[0].VDI); return ok }, 5*time.Second).Should(BeTrue())
	g.Expect(rootVDI.VirtualSize).To(BeNumerically(">=", int64(12<<30)), "provision honoured the root size")

	nets := p.cache.Networks.ByIndex(cache.IndexName, "Pool-wide network associated with eth0")
	g.Expect(nets).To(HaveLen(1))
	g.Expect(p.svc.CreateNIC(ctx, vm, o, NIC{Device: "0", Network: nets[0]})).To(Succeed())
	// The owner is unsettled until the cache shows the new VIF; under load
	// its event can come before this line, so only the order is asserted.
	settled := p.svc.Settled(o)
	g.Expect(!settled || len(p.cache.VIFsOf(vm)) == 1).To(BeTrue(), "settled before the cache showed the new VIF")
	p.settle(g, o)
	vifs := p.cache.VIFsOf(vm)
	g.Expect(vifs).To(HaveLen(1))
	g.Expect(vifs[0].MAC).NotTo(BeEmpty(), "xapi generated a MAC")

	sr, _ := p.cache.DefaultSR()
	g.Expect(p.svc.CreateDisk(ctx, vm, o, NewDisk{Name: "data", SR: sr, Size: 1 << 30, Policy: PolicyRetain})).To(Succeed())
	p.settle(g, o)
	owned := OwnedDisks(p.cache, o)
	g.Expect(owned).To(HaveLen(1))
	data := owned[0]
	g.Expect(data.OtherConfig).To(And(HaveKeyWithValue(TagDisk, "data"), HaveKeyWithValue(TagDeletionPolicy, PolicyRetain)))
	g.Expect(p.svc.AttachDisk(ctx, vm, o, data, "")).To(Succeed())
	p.settle(g, o)
	g.Expect(p.cache.VBDsOf(vm)).To(HaveLen(2))

	g.Expect(p.svc.GrowDisk(ctx, data, o, 2<<30, false)).To(Succeed())
	p.settle(g, o)
	data, _ = p.cache.VDIs.Get(data.Ref)
	g.Expect(data.VirtualSize).To(BeNumerically(">=", int64(2<<30)))

	// Destroy keeps the retained disk, untagged, and destroys the rest.
	g.Expect(p.svc.Destroy(ctx, vm)).To(Succeed())
	kept, err := p.client.VDI(ctx, data.Ref)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kept.OtherConfig).NotTo(HaveKey(TagUID))
	_, err = p.client.VDI(ctx, rootVDI.Ref)
	g.Expect(xenapi.IsHandleInvalid(err)).To(BeTrue())
}

func TestDiskOnAnISOLibraryIsRefused(t *testing.T) {
	g := NewWithT(t)
	p := newPool(t)
	o := Owner{UID: "iso-uid", Namespace: "ns", Name: "iso"}
	vm := p.installed(g, o, "Debian Bookworm 12")
	isos := p.cache.SRs.ByIndex(cache.IndexName, "ISO library")
	g.Expect(isos).To(HaveLen(1))
	// Its content type says so before any call (the controller checks it);
	// asked anyway, its SM driver cannot create the disk's file.
	g.Expect(isos[0].ContentType).To(Equal("iso"))
	err := p.svc.CreateDisk(context.Background(), vm, o, NewDisk{Name: "data", SR: isos[0], Size: 1 << 30})
	xe, ok := xenapi.AsError(err)
	g.Expect(ok).To(BeTrue(), "%v", err)
	g.Expect(xe.Code).To(Equal("SR_BACKEND_FAILURE_78"))
	g.Expect(xenapi.IsSRFull(err)).To(BeFalse())
}

// lostAnswer runs call while xapi runs every mutating call but drops its
// answer (the connection closes), as the chaos suite's faults do.
func (p *pool) lostAnswer(g Gomega, call func() error) {
	rc := p.sim.Runtime()
	rc.ResponseLossRate = 1
	p.sim.SetRuntime(rc)
	err := call()
	rc.ResponseLossRate = 0
	p.sim.SetRuntime(rc)
	g.Expect(xenapi.IsConnectionError(err)).To(BeTrue(), "the answer was lost: %v", err)
}

// A create whose answer was lost ran all the same; the retry, which comes
// before the cache can show what the first call created, finds it in xapi
// instead of creating a second one (seen in the chaos suite: two data disks).
func TestDeviceCreationsWhoseAnswerWasLost(t *testing.T) {
	g := NewWithT(t)
	p := newPool(t)
	ctx := context.Background()
	o := Owner{UID: "lost-devices", Namespace: "ns", Name: "db"}
	vm := p.installed(g, o, "Debian Bookworm 12")
	sr, _ := p.cache.DefaultSR()
	ours := func(role string) func() ([]string, error) {
		return func() ([]string, error) {
			vdis, err := p.client.VDIsByName(ctx, vm.NameLabel+" "+role)
			var refs []string
			for _, v := range vdis {
				if v.OtherConfig[TagUID] == o.UID {
					refs = append(refs, v.Ref)
				}
			}
			return refs, err
		}
	}

	data := NewDisk{Name: "data", SR: sr, Size: 1 << 30}
	p.lostAnswer(g, func() error { return p.svc.CreateDisk(ctx, vm, o, data) })
	g.Expect(ours("data")()).To(HaveLen(1), "xapi created the disk")
	g.Expect(p.svc.CreateDisk(ctx, vm, o, data)).To(Succeed())
	disks, err := ours("data")()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(disks).To(HaveLen(1), "the retry found the disk instead of creating another")
	// The found disk holds the owner's devices until the cache shows it (its
	// event may have come already: the expectation is what is certain).
	p.svc.expect.mu.Lock()
	g.Expect(p.svc.expect.pending[o.UID]).To(HaveLen(1), "the found disk is awaited")
	p.svc.expect.mu.Unlock()
	p.settle(g, o)
	g.Expect(OwnedDisks(p.cache, o)).To(ConsistOf(HaveField("Ref", disks[0])), "the cache shows the disk found")
	g.Expect(p.svc.CreateDisk(ctx, vm, o, data)).To(Succeed())
	g.Expect(ours("data")()).To(HaveLen(2), "the doubt was resolved: a later create creates")

	p.lostAnswer(g, func() error { return p.svc.CreateConfigDrive(ctx, vm, o, sr, 1<<20) })
	g.Expect(p.svc.CreateConfigDrive(ctx, vm, o, sr, 1<<20)).To(Succeed())
	g.Expect(ours("config drive")()).To(HaveLen(1))

	nets := p.cache.Networks.ByIndex(cache.IndexName, "Pool-wide network associated with eth0")
	g.Expect(nets).To(HaveLen(1))
	nic := NIC{Device: "0", Network: nets[0]}
	p.lostAnswer(g, func() error { return p.svc.CreateNIC(ctx, vm, o, nic) })
	g.Expect(p.svc.CreateNIC(ctx, vm, o, nic)).To(Succeed(), "the retry found the VIF: no DEVICE_ALREADY_EXISTS")
	now, err := p.client.VM(ctx, vm.Ref)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(now.VIFs).To(HaveLen(1))

	vdi, err := p.client.VDI(ctx, disks[0])
	g.Expect(err).NotTo(HaveOccurred())
	vbds := func() int {
		now, err := p.client.VDI(ctx, vdi.Ref)
		g.Expect(err).NotTo(HaveOccurred())
		return len(now.VBDs)
	}
	p.lostAnswer(g, func() error { return p.svc.AttachDisk(ctx, vm, o, vdi, "") })
	g.Expect(vbds()).To(Equal(1), "xapi attached the disk")
	g.Expect(p.svc.AttachDisk(ctx, vm, o, vdi, "")).To(Succeed())
	g.Expect(vbds()).To(Equal(1), "the retry found the VBD instead of attaching the disk twice")
	p.settle(g, o)

	snap := Owner{UID: "lost-snapshot", Namespace: "ns", Name: "db-snap"}
	var first string
	p.lostAnswer(g, func() error {
		var err error
		first, err = p.svc.TakeSnapshot(ctx, vm, snap, SnapshotRequest{})
		return err
	})
	g.Expect(first).To(BeEmpty())
	ref, err := p.svc.TakeSnapshot(ctx, vm, snap, SnapshotRequest{})
	g.Expect(err).NotTo(HaveOccurred())
	snaps, err := p.client.VMsByName(ctx, snap.SnapshotName())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snaps).To(HaveLen(1), "the retry found the snapshot instead of taking another")
	g.Expect(snaps[0].Ref).To(Equal(ref))

	// A snapshot whose caller stopped waiting runs on in xapi (and xapi
	// runs snapshots of a VM side by side): the retry waits for it.
	slow := Owner{UID: "slow-snapshot", Namespace: "ns", Name: "db-slow"}
	rc := p.sim.Runtime()
	rc.OpDurations["snapshot"] = xapisim.Duration(time.Second)
	p.sim.SetRuntime(rc)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = p.svc.TakeSnapshot(short, vm, slow, SnapshotRequest{})
	cancel()
	g.Expect(err).To(MatchError(context.DeadlineExceeded))
	_, err = p.svc.TakeSnapshot(ctx, vm, slow, SnapshotRequest{})
	g.Expect(err).To(MatchError(ErrEarlierCallRunning))
	g.Eventually(func() (string, error) {
		return p.svc.TakeSnapshot(ctx, vm, slow, SnapshotRequest{})
	}, 5*time.Second, 100*time.Millisecond).ShouldNot(BeEmpty())
	snaps, err = p.client.VMsByName(ctx, slow.SnapshotName())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snaps).To(HaveLen(1), "one snapshot, the lost call's")
}
