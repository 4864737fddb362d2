package controller

import (
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xapisim"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

var _ = Describe("XenVM controller", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		host := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
	})

	It("installs the VM once from its template and reports it", func() {
		obj := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1"},
			Spec: virtv1alpha1.XenVMSpec{
				HostRef: virtv1alpha1.LocalObjectReference{Name: "pool"}, Template: "Debian Bookworm 12",
				Description: "the web server", VCPUs: ptr(int32(2)), Memory: ptr(resource.MustParse("2Gi")),
				OtherConfig: map[string]string{"team": "web"},
				// Stock templates have no interface: the guest reports an
				// address only on one the operator created.
				NetworkInterfaces: []virtv1alpha1.NetworkInterface{{Name: "eth0", Network: "Pool-wide network associated with eth0"}},
			},
		}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.Phase).To(Equal(virtv1alpha1.PhaseRunning))
			g.Expect(st.IPAddresses).NotTo(BeEmpty())
			g.Expect(st.ResidentOn).To(HavePrefix("xcp-ng-0"))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionProvisioned, metav1.ConditionTrue, virtv1alpha1.ReasonProvisioned))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionRestartRequired, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationApplied))
		}, 20*time.Second).Should(Succeed())

		st := getVM(Default, obj).Status
		vm, err := xen.VMByUUID(ctx, st.UUID)
		Expect(err).NotTo(HaveOccurred())
		Expect(vm.NameLabel).To(Equal("web-1"))
		Expect(vm.NameDescription).To(Equal("the web server"))
		Expect(vm.IsTemplate).To(BeFalse())
		Expect(vm.VCPUsMax).To(Equal(int64(2)))
		Expect(vm.MemoryStaticMax).To(Equal(int64(2 << 30)))
		Expect(vm.OtherConfig).To(HaveKeyWithValue("team", "web"))
		Expect(vm.OtherConfig).To(HaveKeyWithValue(vmservice.TagUID, mustUID(obj)))
		Expect(vm.OtherConfig).To(HaveKeyWithValue(vmservice.TagOwner, ns+"/web-1"))
		Expect(vm.OtherConfig).NotTo(HaveKey("disks"))
		Expect(vm.VBDs).To(HaveLen(1), "the template's disk was created")
		Expect(vmsTagged(Default, obj)).To(Equal(1))

		By("changing the memory of a running VM: RestartRequired until the next halt")
		got := getVM(Default, obj)
		got.Spec.Memory = ptr(resource.MustParse("3Gi"))
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionRestartRequired, metav1.ConditionTrue, virtv1alpha1.ReasonConfigurationPending))
		}, 10*time.Second).Should(Succeed())
		got = getVM(Default, obj)
		got.Spec.PowerState = virtv1alpha1.PowerStateHalted
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateHalted)
		Eventually(func(g Gomega) {
			vm, err := xen.VMByUUID(ctx, st.UUID)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(vm.MemoryStaticMax).To(Equal(int64(3 << 30)))
			g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionRestartRequired, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationApplied))
		}, 10*time.Second).Should(Succeed())
	})

	It("drives every power transition, through several steps where xapi needs them", func() {
		states := []virtv1alpha1.PowerState{virtv1alpha1.PowerStateRunning, virtv1alpha1.PowerStateHalted,
			virtv1alpha1.PowerStateSuspended, virtv1alpha1.PowerStatePaused}
		type pair struct {
			obj      *virtv1alpha1.XenVM
			from, to virtv1alpha1.PowerState
		}
		var pairs []pair
		for _, from := range states {
			for _, to := range states {
				name := strings.ToLower(fmt.Sprintf("%s-to-%s", from, to))
				pairs = append(pairs, pair{newVM(ns, name, "pool", "Debian Bookworm 12", from), from, to})
			}
		}
		for _, p := range pairs {
			waitPower(p.obj, p.from)
		}
		for _, p := range pairs {
			got := getVM(Default, p.obj)
			got.Spec.PowerState = p.to
			Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}
		for _, p := range pairs {
			By(fmt.Sprintf("%s -> %s", p.from, p.to))
			waitPower(p.obj, p.to)
		}
	})

	It("powers a guest without an agent off at once in TrySoft mode, and waits in Soft mode", func() {
		trySoft := newVM(ns, "no-agent", "pool", "Other install media", virtv1alpha1.PowerStateRunning)
		waitPower(trySoft, virtv1alpha1.PowerStateRunning)
		got := getVM(Default, trySoft)
		got.Spec.PowerState = virtv1alpha1.PowerStateHalted
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		waitPower(trySoft, virtv1alpha1.PowerStateHalted)

		soft := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "soft"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "pool"},
				Template: "Other install media", PowerOffMode: virtv1alpha1.PowerOffSoft},
		}
		Expect(k8sClient.Create(ctx, soft)).To(Succeed())
		waitPower(soft, virtv1alpha1.PowerStateRunning)
		got = getVM(Default, soft)
		got.Spec.PowerState = virtv1alpha1.PowerStateHalted
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, soft).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonWaitingForGuest))
		}, 10*time.Second).Should(Succeed())
		Expect(getVM(Default, soft).Status.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
	})

	It("puts the VM back after an out-of-band change, and reports a destroyed VM", func() {
		obj := newVM(ns, "oob", "pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		uuid := getVM(Default, obj).Status.UUID
		vm, err := xen.VMByUUID(ctx, uuid)
		Expect(err).NotTo(HaveOccurred())

		Expect(xen.HardShutdownVM(ctx, vm.Ref)).To(Succeed())
		start := time.Now()
		Eventually(func(g Gomega) {
			v, err := xen.VM(ctx, vm.Ref)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(v.PowerState).To(Equal(xenapi.PowerStateRunning))
		}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("driven back in %s\n", time.Since(start))
		waitPower(obj, virtv1alpha1.PowerStateRunning)

		Expect(xen.HardShutdownVM(ctx, vm.Ref)).To(Succeed())
		Expect(xen.DestroyVM(ctx, vm.Ref)).To(Succeed())
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.Phase).To(Equal(virtv1alpha1.PhaseFailed))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonVMDeleted))
		}, 10*time.Second).Should(Succeed())
		Consistently(func(g Gomega) int { return vmsTagged(g, obj) }, 2*time.Second).Should(BeZero(), "not silently recreated")

		By("opting in to recreation")
		got := getVM(Default, obj)
		got.Spec.RecreateIfMissing = true
		Expect(k8sClient.Update(ctx, got)).To(Succeed())
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.UUID).NotTo(Equal(uuid))
			g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
		}, 20*time.Second).Should(Succeed())
		Expect(vmsTagged(Default, obj)).To(Equal(1))
	})

	Describe("a crash between two install steps", func() {
		// The operator crashed after some step; when it comes back its
		// inventory syncs in full. Modelled with a pool of its own that the
		// controller first sees after the test staged the half-done install.
		var own *xapisim.Server
		var xc *xenapi.Client
		var obj *virtv1alpha1.XenVM
		var tmpl *xenapi.VM
		BeforeEach(func() {
			own = startSim(xapisim.Config{})
			pool := xenapi.NewSessions(xenapi.Options{Originator: "controller-tests"})
			DeferCleanup(func() { pool.Close(ctx) })
			var err error
			xc, err = pool.Client("tests", xenapi.Endpoint{URL: own.URL(), Username: "root", Password: "xenserver"})
			Expect(err).NotTo(HaveOccurred())
			obj = newVM(ns, "crashed", "late", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)
			Eventually(func(g Gomega) {
				g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionHostAvailable, metav1.ConditionFalse, virtv1alpha1.ReasonXenHostNotFound))
			}, 10*time.Second).Should(Succeed())
			obj = getVM(Default, obj)
			tmpls, err := xc.VMsByName(ctx, "Debian Bookworm 12")
			Expect(err).NotTo(HaveOccurred())
			Expect(tmpls).To(HaveLen(1))
			tmpl = tmpls[0]
		})
		finish := func() {
			newHost(ns, "late", own.URL(), "xenserver")
			Eventually(func(g Gomega) {
				g.Expect(getVM(g, obj).Status.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
			}, 30*time.Second).Should(Succeed())
			Expect(own.Stats().VMs).To(Equal(map[string]int{"Running": 1}), "no second VM")
			vms, err := xc.VMs(ctx)
			Expect(err).NotTo(HaveOccurred())
			for _, vm := range vms {
				if !vm.IsTemplate && !vm.IsControlDomain {
					Expect(vm.OtherConfig).To(HaveKeyWithValue(vmservice.TagUID, string(obj.UID)))
					Expect(vm.NameLabel).To(Equal("crashed"))
				}
			}
		}

		It("after the clone: the untagged clone is adopted", func() {
			_, err := xc.CloneVM(ctx, tmpl.Ref, installName(obj.UID))
			Expect(err).NotTo(HaveOccurred())
			finish()
		})
		It("after two clones raced (one started before a crash, one after): one is kept, the other destroyed", func() {
			for range 2 {
				_, err := xc.CloneVM(ctx, tmpl.Ref, installName(obj.UID))
				Expect(err).NotTo(HaveOccurred())
			}
			finish()
			Eventually(func(g Gomega) []*xenapi.VM {
				vms, err := xc.VMsByName(ctx, installName(obj.UID))
				g.Expect(err).NotTo(HaveOccurred())
				return vms
			}, 10*time.Second).Should(BeEmpty(), "no duplicate left")
		})
		It("after the tag: the tagged template is provisioned", func() {
			ref, err := xc.CloneVM(ctx, tmpl.Ref, installName(obj.UID))
			Expect(err).NotTo(HaveOccurred())
			Expect(xc.AddToVMOtherConfig(ctx, ref, vmservice.TagUID, string(obj.UID))).To(Succeed())
			finish()
		})
		It("after a provision that failed half-way: the VM is made a template again and provisioned", func() {
			ref, err := xc.CloneVM(ctx, tmpl.Ref, installName(obj.UID))
			Expect(err).NotTo(HaveOccurred())
			Expect(xc.AddToVMOtherConfig(ctx, ref, vmservice.TagUID, string(obj.UID))).To(Succeed())
			err = xc.ProvisionVM(ctx, ref) // sr="": xapi un-templates, then fails
			Expect(xenapi.IsUUIDInvalid(err)).To(BeTrue())
			finish()
			vm, err := xc.VM(ctx, ref)
			Expect(err).NotTo(HaveOccurred())
			Expect(vm.VBDs).To(HaveLen(1))
		})
		It("after the provision: the VM is started, not installed again", func() {
			ref, err := xc.CloneVM(ctx, tmpl.Ref, installName(obj.UID))
			Expect(err).NotTo(HaveOccurred())
			pool, err := xc.PoolRecord(ctx)
			Expect(err).NotTo(HaveOccurred())
			sr, err := xc.SR(ctx, pool.DefaultSR)
			Expect(err).NotTo(HaveOccurred())
			vm, err := xc.VM(ctx, ref)
			Expect(err).NotTo(HaveOccurred())
			Expect(xc.SetVMOtherConfig(ctx, ref, vmservice.DesiredOtherConfig(vm.OtherConfig, obj.Spec.OtherConfig, ownerOf(obj), vmservice.DiskPlan{DefaultSR: sr.UUID}))).To(Succeed())
			Expect(xc.ProvisionVM(ctx, ref)).To(Succeed())
			finish()
			Expect(getVM(Default, obj).Status.UUID).To(Equal(vm.UUID))
		})
	})

	It("destroys the VM and its disks with deletionPolicy Delete", func() {
		obj := newVM(ns, "doomed", "pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		vm, err := xen.VMByUUID(ctx, getVM(Default, obj).Status.UUID)
		Expect(err).NotTo(HaveOccurred())
		vbd, err := xen.VBD(ctx, vm.VBDs[0])
		Expect(err).NotTo(HaveOccurred())

		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func() bool {
			return client.IgnoreNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &virtv1alpha1.XenVM{})) == nil &&
				k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &virtv1alpha1.XenVM{}) != nil
		}, 20*time.Second).Should(BeTrue())
		_, err = xen.VM(ctx, vm.Ref)
		Expect(xenapi.IsHandleInvalid(err)).To(BeTrue())
		_, err = xen.VDI(ctx, vbd.VDI)
		Expect(xenapi.IsHandleInvalid(err)).To(BeTrue(), "the disk went with the VM")
	})

	It("leaves the VM running, untagged, with deletionPolicy Retain", func() {
		obj := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kept"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "pool"},
				Template: "Debian Bookworm 12", DeletionPolicy: virtv1alpha1.DeletionPolicyRetain},
		}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		uuid := getVM(Default, obj).Status.UUID
		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &virtv1alpha1.XenVM{})
		}, 20*time.Second).Should(MatchError(ContainSubstring("not found")))
		vm, err := xen.VMByUUID(ctx, uuid)
		Expect(err).NotTo(HaveOccurred())
		Expect(vm.PowerState).To(Equal(xenapi.PowerStateRunning))
		Expect(vm.OtherConfig).NotTo(HaveKey(vmservice.TagUID))
		Expect(vm.OtherConfig).NotTo(HaveKey(vmservice.TagOwner))
	})

	It("keeps the finalizer while the XenHost cannot be reached", func() {
		own := startSim(xapisim.Config{})
		host := newHost(ns, "fragile", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		obj := newVM(ns, "stuck", "fragile", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, obj).Status.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
		}, 30*time.Second).Should(Succeed())

		own.Refuse(6 * time.Second)
		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.Phase).To(Equal(virtv1alpha1.PhaseDeleting))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionHostAvailable, metav1.ConditionFalse, virtv1alpha1.ReasonUnreachable))
		}, 10*time.Second).Should(Succeed())
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &virtv1alpha1.XenVM{})
		}, 40*time.Second).Should(MatchError(ContainSubstring("not found")))
		Expect(own.Stats().VMs).To(BeEmpty(), "deleted once xapi came back")
	})

	It("reports a missing and an ambiguous template", func() {
		missing := newVM(ns, "missing", "pool", "Plan 9 from Bell Labs", virtv1alpha1.PowerStateRunning)
		Eventually(func(g Gomega) {
			st := getVM(g, missing).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonTemplateNotFound))
			g.Expect(st.Phase).To(Equal(virtv1alpha1.PhaseFailed))
			g.Expect(condition(st.Conditions, virtv1alpha1.ConditionReady).Message).To(ContainSubstring("Plan 9 from Bell Labs"))
		}, 10*time.Second).Should(Succeed())

		tmpls, err := xen.VMsByName(ctx, "CentOS Stream 9")
		Expect(err).NotTo(HaveOccurred())
		_, err = xen.CloneVM(ctx, tmpls[0].Ref, "CentOS Stream 9")
		Expect(err).NotTo(HaveOccurred())
		// The controller learns of the second template from the event stream.
		time.Sleep(time.Second)
		ambiguous := newVM(ns, "ambiguous", "pool", "CentOS Stream 9", virtv1alpha1.PowerStateRunning)
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, ambiguous).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonTemplateAmbiguous))
		}, 10*time.Second).Should(Succeed())
		Expect(vmsTagged(Default, ambiguous)).To(BeZero())

		byUUID := newVM(ns, "by-uuid", "pool", tmpls[0].UUID, virtv1alpha1.PowerStateHalted)
		waitPower(byUUID, virtv1alpha1.PowerStateHalted)
	})
})

var _ = Describe("An object the manager cannot use", func() {
	It("affects only itself", func() {
		ns := newNamespace()
		host := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)

		By("storing a XenVM the way an older, looser CRD let through")
		bad := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": virtv1alpha1.GroupVersion.String(), "kind": "XenVM",
			"metadata": map[string]any{"name": "banana", "namespace": ns},
			"spec": map[string]any{"hostRef": map[string]any{"name": "pool"}, "template": "Debian Bookworm 12",
				"softShutdownTimeout": "banana", "memory": "lots"},
		}}
		loosenCRD(func() error { return k8sClient.Create(ctx, bad) })

		By("a healthy XenVM created afterwards is installed and started")
		good := newVM(ns, "healthy", "pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)
		waitPower(good, virtv1alpha1.PowerStateRunning)

		By("the bad one says what is wrong with it in an event, and nothing was installed for it")
		badVM := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "banana"}}
		Eventually(func(g Gomega) {
			list := &eventsv1.EventList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(ContainElement(And(
				HaveField("Regarding.Name", "banana"), HaveField("Reason", virtv1alpha1.ReasonInvalidSpec),
				HaveField("Note", And(ContainSubstring("spec.softShutdownTimeout"), ContainSubstring("spec.memory"))))))
		}, 10*time.Second).Should(Succeed())
		got := getVM(Default, badVM)
		Expect(got.Spec.DecodeError()).NotTo(BeEmpty(), "the suite's client decodes it leniently too")
		Expect(vmsTagged(Default, got)).To(BeZero())
		Expect(got.Finalizers).To(BeEmpty(), "nothing to clean up")

		By("it can still be deleted")
		Expect(k8sClient.Delete(ctx, badVM)).To(Succeed())
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKeyFromObject(badVM), &virtv1alpha1.XenVM{})
		}, 10*time.Second).Should(MatchError(ContainSubstring("not found")))
	})
})

// loosenCRD runs create while the XenVM CRD validates neither durations nor
// quantities (as an older CRD might not have), then restores it.
func loosenCRD(create func() error) {
	GinkgoHelper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	key := client.ObjectKey{Name: "xenvms.virt.xen-operator.io"}
	Expect(k8sClient.Get(ctx, key, crd)).To(Succeed())
	original := crd.Spec.DeepCopy()
	props := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties
	for _, f := range []string{"softShutdownTimeout", "memory"} {
		p := props[f]
		p.Pattern, p.XValidations, p.Default = "", nil, nil
		props[f] = p
	}
	Expect(k8sClient.Update(ctx, crd)).To(Succeed())
	Eventually(create, 10*time.Second, 200*time.Millisecond).Should(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, key, crd)).To(Succeed())
		crd.Spec = *original
		g.Expect(k8sClient.Update(ctx, crd)).To(Succeed())
	}).Should(Succeed())
	probe := vmWithSpec("validation-probe", "softShutdownTimeout", "banana")
	probe.SetNamespace("default")
	Eventually(func() error { return k8sClient.Create(ctx, probe) }, 10*time.Second, 200*time.Millisecond).
		Should(MatchError(ContainSubstring("spec.softShutdownTimeout in body should match")), "the CRD validates again")
}

var _ = Describe("A XenHost with many XenVMs", func() {
	It("uses exactly one session for 50 XenVMs", func() {
		own := startSim(xapisim.Config{OpDuration: 10 * time.Millisecond})
		ns := newNamespace()
		host := newHost(ns, "busy", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				newVM(ns, fmt.Sprintf("vm-%02d", i), "busy", "Ubuntu Jammy Jellyfish 22.04", virtv1alpha1.PowerStateRunning)
			}()
		}
		wg.Wait()
		Eventually(func() map[string]int { return own.Stats().VMs }, 60*time.Second, 200*time.Millisecond).
			Should(Equal(map[string]int{"Running": 50}))
		Eventually(func(g Gomega) {
			list := &virtv1alpha1.XenVMList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			for _, vm := range list.Items {
				g.Expect(vm.Status.Phase).To(Equal(virtv1alpha1.PhaseRunning), vm.Name)
			}
		}, 30*time.Second).Should(Succeed())
		st := own.Stats()
		Expect(st.LoginsTotal).To(Equal(int64(1)))
		Expect(st.SessionsPeak).To(Equal(1))
	})
})

func ptr[T any](v T) *T { return &v }
