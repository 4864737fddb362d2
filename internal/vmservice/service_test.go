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

// The service is tested as the reconcilers use it: the real client over
// HTTP against the simulator, with a cache fed by the event stream.

type pool struct {
	sim    *xapisim.Server
	client *xenapi.Client
	cache  *cache.Cache
	svc    *XenAPI
	woken  chan string
}

func newPool(t *testing.T) *pool {
	t.Helper()
	cfg := xapisim.Config{AuthFailureDelay: 10 * time.Millisecond}
	sim, err := xapisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	sessions := xenapi.NewSessions(xenapi.Options{Originator: "vmservice-tests", EventTimeout: 2 * time.Second})
	t.Cleanup(func() { sessions.Close(context.Background()) })
	client, err := sessions.Client("tests", xenapi.Endpoint{URL: sim.URL(), Username: "root", Password: "xenserver"})
	if err != nil {
		t.Fatal(err)
	}
	p := &pool{sim: sim, client: client, woken: make(chan string, 100)}
	p.cache = cache.New(CacheOptions(func(o string) { p.woken <- o }, &Observers{}))
	sub, err := client.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	go p.cache.Run(sub.Events())
	NewWithT(t).Eventually(p.cache.HasSynced, 5*time.Second).Should(BeTrue())
	p.svc = New(client, p.cache)
	return p
}

func (p *pool) template(g Gomega, name string) *xenapi.VM {
	tmpls := Templates(p.cache, name)
	g.Expect(tmpls).To(HaveLen(1))
	return tmpls[0]
}

// owned waits until the cache shows exactly one VM of o, not a pending one.
func (p *pool) owned(g Gomega, o Owner) *xenapi.VM {
	var vm *xenapi.VM
	g.Eventually(func(g Gomega) {
		vms := Owned(p.cache, o)
		g.Expect(vms).To(HaveLen(1))
		g.Expect(Pending(vms[0])).To(BeFalse())
		vm = vms[0]
	}, 5*time.Second, 10*time.Millisecond).Should(Succeed())
	return vm
}

func TestInstallFromTemplate(t *testing.T) {
	g := NewWithT(t)
	p := newPool(t)
	ctx := context.Background()
	o := Owner{UID: "3f1c-uid", Namespace: "ns", Name: "web-1"}

	ref, err := p.svc.Clone(ctx, p.template(g, "Debian Bookworm 12"), o)
	g.Expect(err).NotTo(HaveOccurred())
	pending := Owned(p.cache, o)
	g.Expect(pending).To(HaveLen(1), "the clone is known before its event")
	g.Expect(pending[0].Ref).To(Equal(ref))
	g.Eventually(p.woken, 5*time.Second).Should(Receive(Equal("ns/web-1")), "its event wakes the owner")
	vm := p.owned(g, o)
	g.Expect(vm.NameLabel).To(Equal(o.InstallName()))
	g.Expect(vm.IsTemplate).To(BeTrue(), "a clone of a template is a template")

	sr, ok := p.cache.DefaultSR()
	g.Expect(ok).To(BeTrue())
	g.Expect(NeedsClaim(vm, o, DiskPlan{DefaultSR: sr.UUID})).To(BeTrue())
	g.Expect(p.svc.Claim(ctx, vm, o, map[string]string{"team": "web"}, DiskPlan{DefaultSR: sr.UUID})).To(Succeed())
	vm, _ = p.cache.VM(ref)
	g.Expect(NeedsClaim(vm, o, DiskPlan{DefaultSR: sr.UUID})).To(BeFalse(), "the cache shows the claim at once")
	g.Expect(Claimed(vm, o, DiskPlan{DefaultSR: sr.UUID})).To(BeTrue())

	g.Expect(p.svc.Provision(ctx, vm, o)).To(Succeed())
	vm, _ = p.cache.VM(ref)
	g.Expect(Installed(vm, o)).To(BeTrue())

	changed, err := p.svc.Configure(ctx, vm, o, Config{NameLabel: "web-1", Description: "the web server",
		OtherConfig: map[string]string{"team": "web"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeTrue())
	vm, _ = p.cache.VM(ref)
	changed, err = p.svc.Configure(ctx, vm, o, Config{NameLabel: "web-1", Description: "the web server",
		OtherConfig: map[string]string{"team": "web"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(changed).To(BeFalse(), "nothing to do the second time, before any event")

	g.Expect(p.svc.Resize(ctx, vm, 4, 2<<30)).To(Succeed())
	got, err := p.client.VM(ctx, ref)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect([]any{got.NameLabel, got.NameDescription, got.VCPUsMax, got.VCPUsAtStartup, got.MemoryStaticMax, got.IsTemplate}).
		To(Equal([]any{"web-1", "the web server", int64(4), int64(4), int64(2 << 30), false}))
	g.Expect(got.OtherConfig).To(And(HaveKeyWithValue(TagUID, o.UID), HaveKeyWithValue(TagOwner, "ns/web-1"),
		HaveKeyWithValue("team", "web"), Not(HaveKey("disks"))))
	g.Expect(got.VBDs).To(HaveLen(1))

	By := "fewer VCPUs: at_startup first, as xapi's at_startup <= max requires"
	vm, _ = p.cache.VM(ref)
	g.Expect(p.svc.Resize(ctx, vm, 1, 0)).To(Succeed(), By)

	task, err := p.svc.BeginPower(ctx, vm, OpStart)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() xenapi.TaskStatus {
		t, _, _ := p.cache.Task(task)
		if t == nil {
			return ""
		}
		return t.Status
	}, 5*time.Second).Should(Equal(xenapi.TaskSuccess))
	finished, _, _ := p.cache.Task(task)
	g.Expect(p.svc.FinishTask(ctx, finished)).To(Succeed())
	g.Expect(p.svc.CancelTask(ctx, task)).To(Succeed(), "cancelling an ended task is no error")

	g.Expect(p.svc.PowerOff(ctx, vm)).To(Succeed())
	g.Expect(p.svc.PowerOff(ctx, vm)).To(Succeed(), "a VM already off")
	vdis, err := p.client.VBD(ctx, got.VBDs[0])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.svc.Destroy(ctx, vm)).To(Succeed())
	_, err = p.client.VDI(ctx, vdis.VDI)
	g.Expect(xenapi.IsHandleInvalid(err)).To(BeTrue(), "the disk went with the VM")
	exists, err := p.svc.Exists(ctx, got.UUID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exists).To(BeFalse())
	g.Expect(p.svc.Destroy(ctx, vm)).To(Succeed(), "destroying what is gone is done")
}

func TestCloneWhoseAnswerWasLost(t *testing.T) {
	g := NewWithT(t)
	p := newPool(t)
	o := Owner{UID: "lost-answer", Namespace: "ns", Name: "vm"}
	tmpl := p.template(g, "Rocky Linux 9")

	// The call reaches xapi, which clones, but the answer comes too late:
	// its outcome is unknown to the caller.
	rc := p.sim.Runtime()
	rc.Latency = xapisim.Duration(300 * time.Millisecond)
	p.sim.SetRuntime(rc)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := p.svc.Clone(ctx, tmpl, o)
	cancel()
	g.Expect(err).To(HaveOccurred())
	rc.Latency = 0
	p.sim.SetRuntime(rc)
	g.Eventually(func() ([]*xenapi.VM, error) {
		return p.client.VMsByName(context.Background(), o.InstallName())
	}, 5*time.Second).Should(HaveLen(1), "xapi did clone")

	ref, err := p.svc.Clone(context.Background(), tmpl, o)
	g.Expect(err).NotTo(HaveOccurred())
	vms, err := p.client.VMsByName(context.Background(), o.InstallName())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(vms).To(HaveLen(1), "the second call found the first clone instead of cloning again")
	g.Expect(ref).To(Equal(vms[0].Ref))
}

func TestExistsIsNeverNoWhenXapiCannotBeReached(t *testing.T) {
	g := NewWithT(t)
	p := newPool(t)
	p.sim.Refuse(2 * time.Second)
	_, err := p.svc.Exists(context.Background(), "8ec4e0a4-0000-0000-0000-000000000000")
	g.Expect(xenapi.IsConnectionError(err)).To(BeTrue())
}

// A reconcile whose view lags the provision it follows (the VM
// un-templated, its disks key still there) must not undo it: xapi is asked
// before the VM is made a template again (seen at N=10000: a second
// provision of an installed VM).
func TestProvisionFromALaggingView(t *testing.T) {
	g := NewWithT(t)
	p := newPool(t)
	ctx := context.Background()
	o := Owner{UID: "lagging-uid", Namespace: "ns", Name: "web"}
	claimed := func() *xenapi.VM {
		_, err := p.svc.Clone(ctx, p.template(g, "Debian Bookworm 12"), o)
		g.Expect(err).NotTo(HaveOccurred())
		vm := p.owned(g, o)
		sr, _ := p.cache.DefaultSR()
		g.Expect(p.svc.Claim(ctx, vm, o, nil, DiskPlan{DefaultSR: sr.UUID})).To(Succeed())
		vm, _ = p.cache.VM(vm.Ref)
		return vm
	}
	vm := claimed()
	g.Expect(p.svc.Provision(ctx, vm, o)).To(Succeed())
	calls := p.sim.Stats().Calls

	lagging := cache.Clone(vm)
	lagging.IsTemplate = false // as xapi's first change of the provision showed it
	g.Expect(p.svc.Provision(ctx, lagging, o)).To(MatchError(ErrInstalled))
	after := p.sim.Stats().Calls
	g.Expect(after["VM.provision"]).To(Equal(calls["VM.provision"]), "not provisioned again")
	g.Expect(after["VM.set_is_a_template"]).To(Equal(calls["VM.set_is_a_template"]), "not made a template again")
	now, _ := p.cache.VM(vm.Ref)
	g.Expect(Installed(now, o)).To(BeTrue(), "the cache shows what xapi said")

	// A provision that really failed part way (un-templated, disks key
	// left) is made a template again and provisioned.
	other := Owner{UID: "failed-uid", Namespace: "ns", Name: "db"}
	o = other
	vm = claimed()
	g.Expect(p.client.SetVMIsTemplate(ctx, vm.Ref, false)).To(Succeed())
	failed := cache.Clone(vm)
	failed.IsTemplate = false
	g.Expect(p.svc.Provision(ctx, failed, o)).To(Succeed())
	fresh, err := p.client.VM(ctx, vm.Ref)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(Installed(fresh, o)).To(BeTrue())
}
