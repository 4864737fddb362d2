package controller

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xapisim"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// The simulated pool's networks and SRs, named as an installed XenServer
// pool names them.
const (
	netManagement = "Pool-wide network associated with eth0"
	netEth1       = "Pool-wide network associated with eth1"
	netVLAN       = "VLAN 100"
	srShared      = "NFS virtual disk storage"
	srLocal       = "Local storage"
	srISO         = "ISO library"
)

func network(g Gomega, name string) *xenapi.Network {
	nets, err := xen.Networks(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	for _, n := range nets {
		if n.NameLabel == name {
			return n
		}
	}
	g.Expect(name).To(BeEmpty(), "no network is named %q", name)
	return nil
}

// localSR returns the local SR of the host named hostName.
func localSR(g Gomega, hostName string) *xenapi.SR { return localSRIn(g, xen, hostName) }

// localSRIn is localSR on the pool c reaches.
func localSRIn(g Gomega, xen *xenapi.Client, hostName string) *xenapi.SR {
	hosts, err := xen.Hosts(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	i := slices.IndexFunc(hosts, func(h *xenapi.Host) bool { return h.NameLabel == hostName })
	g.Expect(i).To(BeNumerically(">=", 0))
	srs, err := xen.SRs(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	for _, sr := range srs {
		if sr.NameLabel != srLocal {
			continue
		}
		for _, pbd := range sr.PBDs {
			p, err := xen.PBD(ctx, pbd)
			g.Expect(err).NotTo(HaveOccurred())
			if p.Host == hosts[i].Ref {
				return sr
			}
		}
	}
	g.Expect(hostName).To(BeEmpty(), "no local SR on %s", hostName)
	return nil
}

// vmOf reads the XenVM's VM from the simulator.
func vmOf(g Gomega, obj *virtv1alpha1.XenVM) *xenapi.VM {
	uuid := getVM(g, obj).Status.UUID
	g.Expect(uuid).NotTo(BeEmpty())
	vm, err := xen.VMByUUID(ctx, uuid)
	g.Expect(err).NotTo(HaveOccurred())
	return vm
}

// vifsOf reads a VM's VIFs by device.
func vifsOf(g Gomega, vm *xenapi.VM) map[string]*xenapi.VIF {
	out := map[string]*xenapi.VIF{}
	for _, ref := range vm.VIFs {
		v, err := xen.VIF(ctx, ref)
		g.Expect(err).NotTo(HaveOccurred())
		out[v.Device] = v
	}
	return out
}

// vmDisk is a disk of a VM as the simulator has it.
type vmDisk struct {
	vbd *xenapi.VBD
	vdi *xenapi.VDI
}

// disksOfVM reads a VM's disks by device.
func disksOfVM(g Gomega, vm *xenapi.VM) map[string]vmDisk {
	out := map[string]vmDisk{}
	for _, ref := range vm.VBDs {
		b, err := xen.VBD(ctx, ref)
		g.Expect(err).NotTo(HaveOccurred())
		if b.Type != "Disk" {
			continue
		}
		d, err := xen.VDI(ctx, b.VDI)
		g.Expect(err).NotTo(HaveOccurred())
		out[b.Userdevice] = vmDisk{vbd: b, vdi: d}
	}
	return out
}

// simControl calls one of the simulator's /sim/ controls and returns its
// answer.
func simControl(g Gomega, method, control, query string) []byte {
	req, err := http.NewRequest(method, sim.URL()+"/sim/"+control+"?"+query, nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
	return body
}

// simSRSizes calls the simulator's /sim/sr control.
func simSRSizes(g Gomega, method, query string) []xapisim.SRSize {
	var out []xapisim.SRSize
	g.Expect(json.Unmarshal(simControl(g, method, "sr", query), &out)).To(Succeed())
	return out
}

func update(obj *virtv1alpha1.XenVM, change func(vm *virtv1alpha1.XenVM)) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		got := getVM(g, obj)
		change(got)
		g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
	}, 10*time.Second).Should(Succeed())
}

func nic(name, network string) virtv1alpha1.NetworkInterface {
	return virtv1alpha1.NetworkInterface{Name: name, Network: network}
}

func vmSpec(host, template string, power virtv1alpha1.PowerState) virtv1alpha1.XenVMSpec {
	return virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: host}, Template: template, PowerState: power}
}

var _ = Describe("Networks and disks", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		host := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
	})

	It("installs a VM with two interfaces on two networks, a larger root disk and a data disk on a named SR", func() {
		local := localSR(Default, "xcp-ng-02")
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-1"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.AffinityHost = "xcp-ng-02"
		obj.Spec.NetworkInterfaces = []virtv1alpha1.NetworkInterface{
			nic("lan", netManagement),
			{Name: "storage", Network: netVLAN, MACAddress: "02:16:3e:00:00:01"},
		}
		obj.Spec.Disks = []virtv1alpha1.Disk{
			{Name: "root", Size: "20Gi", Storage: srShared},
			{Name: "data", Size: "5Gi", Storage: local.UUID},
		}
		obj.Spec.Readiness = &virtv1alpha1.Readiness{WaitForAddress: true}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)

		vm := vmOf(Default, obj)
		vifs := vifsOf(Default, vm)
		Expect(vifs).To(HaveLen(2))
		Expect(vifs["0"].Network).To(Equal(network(Default, netManagement).Ref))
		Expect(vifs["1"].Network).To(Equal(network(Default, netVLAN).Ref))
		Expect(vifs["1"].MAC).To(Equal("02:16:3e:00:00:01"))
		Expect(vifs["0"].CurrentlyAttached && vifs["1"].CurrentlyAttached).To(BeTrue())

		disks := disksOfVM(Default, vm)
		Expect(disks).To(HaveLen(2))
		root := disks["0"]
		Expect(root.vbd.Bootable).To(BeTrue())
		Expect(root.vdi.VirtualSize).To(BeNumerically(">=", int64(20<<30)))
		sr, err := xen.SR(ctx, root.vdi.SR)
		Expect(err).NotTo(HaveOccurred())
		Expect(sr.NameLabel).To(Equal(srShared))
		var data vmDisk
		for dev, d := range disks {
			if dev != "0" {
				data = d
			}
		}
		Expect(data.vdi.SR).To(Equal(local.Ref))
		Expect(data.vdi.VirtualSize).To(BeNumerically(">=", int64(5<<30)))
		Expect(data.vdi.OtherConfig).To(HaveKeyWithValue(vmservice.TagDisk, "data"))
		Expect(data.vbd.CurrentlyAttached).To(BeTrue())

		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.ResidentOn).To(Equal("xcp-ng-02"), "the local SR pins the VM to its host")
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionNetworkSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionDisksSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
			g.Expect(st.NetworkInterfaces).To(HaveLen(2))
			g.Expect(st.NetworkInterfaces[0]).To(And(HaveField("Name", "lan"), HaveField("Device", int32(0)),
				HaveField("Network", netManagement), HaveField("Attached", true), HaveField("IPAddresses", Not(BeEmpty()))))
			g.Expect(st.NetworkInterfaces[1]).To(And(HaveField("Name", "storage"), HaveField("Device", int32(1)),
				HaveField("MACAddress", "02:16:3e:00:00:01"), HaveField("Network", netVLAN)))
			g.Expect(st.Disks).To(ConsistOf(
				And(HaveField("Name", "data"), HaveField("Storage", srLocal), HaveField("VDIUUID", data.vdi.UUID)),
				And(HaveField("Name", "root"), HaveField("Storage", srShared), HaveField("Device", int32(0)))))
		}, 20*time.Second).Should(Succeed())

		By("deleting it: its disks go with it")
		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			for _, d := range []vmDisk{root, data} {
				_, err := xen.VDI(ctx, d.vdi.Ref)
				g.Expect(xenapi.IsHandleInvalid(err)).To(BeTrue(), "VDI %s", d.vdi.UUID)
			}
		}, 20*time.Second).Should(Succeed())
	})

	It("grows the root disk of a halted VM at once, and of a running one at its next halt", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grow"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateHalted)}
		obj.Spec.Disks = []virtv1alpha1.Disk{{Name: "root", Size: "12Gi"}}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateHalted)
		rootSize := func(g Gomega) int64 { return disksOfVM(g, vmOf(g, obj))["0"].vdi.VirtualSize }
		Expect(rootSize(Default)).To(BeNumerically(">=", int64(12<<30)))

		By("growing it while halted")
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.Disks[0].Size = "14Gi" })
		Eventually(rootSize, 10*time.Second).Should(BeNumerically(">=", int64(14<<30)))

		By("growing it while running: RestartRequired, Ready stays")
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.PowerState = virtv1alpha1.PowerStateRunning })
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.Disks[0].Size = "16Gi" })
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionRestartRequired, metav1.ConditionTrue, virtv1alpha1.ReasonConfigurationPending))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionDisksSynced, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationPending))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
		}, 10*time.Second).Should(Succeed())
		Consistently(rootSize, time.Second).Should(BeNumerically("<", int64(16<<30)))

		By("halting it: the disk grows")
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.PowerState = virtv1alpha1.PowerStateHalted })
		Eventually(rootSize, 20*time.Second).Should(BeNumerically(">=", int64(16<<30)))
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionRestartRequired, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationApplied))
		}, 10*time.Second).Should(Succeed())
	})

	It("adds and removes extra disks on a running VM, destroying or keeping each as its policy says", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hotplug"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)

		update(obj, func(vm *virtv1alpha1.XenVM) {
			vm.Spec.Disks = []virtv1alpha1.Disk{
				{Name: "scratch", Size: "1Gi"},
				{Name: "keep", Size: "2Gi", Device: ptr(int32(5)), DeletionPolicy: virtv1alpha1.DeletionPolicyRetain},
			}
		})
		var scratch, keep vmDisk
		Eventually(func(g Gomega) {
			disks := disksOfVM(g, vmOf(g, obj))
			g.Expect(disks).To(HaveLen(3))
			g.Expect(disks).To(HaveKey("5"))
			for dev, d := range disks {
				g.Expect(d.vbd.CurrentlyAttached).To(BeTrue(), "device %s is plugged live", dev)
				switch d.vdi.OtherConfig[vmservice.TagDisk] {
				case "scratch":
					scratch = d
				case "keep":
					keep = d
				}
			}
			g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionDisksSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
		}, 20*time.Second).Should(Succeed())
		Expect(keep.vbd.Userdevice).To(Equal("5"))
		Expect(getVM(Default, obj).Status.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))

		By("removing both from the spec")
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.Disks = nil })
		Eventually(func(g Gomega) {
			g.Expect(disksOfVM(g, vmOf(g, obj))).To(HaveLen(1), "only root is left")
			_, err := xen.VDI(ctx, scratch.vdi.Ref)
			g.Expect(xenapi.IsHandleInvalid(err)).To(BeTrue(), "scratch (Delete) is destroyed")
			kept, err := xen.VDI(ctx, keep.vdi.Ref)
			g.Expect(err).NotTo(HaveOccurred(), "keep (Retain) stays")
			g.Expect(kept.OtherConfig).NotTo(HaveKey(vmservice.TagUID), "and is no longer the operator's")
		}, 20*time.Second).Should(Succeed())
		Expect(getVM(Default, obj).Status.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
		Expect(xen.DestroyVDI(ctx, keep.vdi.Ref)).To(Succeed())
	})

	It("moves an interface to another network while the VM runs, and adds one live", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mover"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.NetworkInterfaces = []virtv1alpha1.NetworkInterface{nic("eth0", netManagement)}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		before := vifsOf(Default, vmOf(Default, obj))["0"]

		update(obj, func(vm *virtv1alpha1.XenVM) {
			vm.Spec.NetworkInterfaces = []virtv1alpha1.NetworkInterface{nic("eth0", netEth1), nic("eth1", netVLAN)}
		})
		Eventually(func(g Gomega) {
			vifs := vifsOf(g, vmOf(g, obj))
			g.Expect(vifs).To(HaveLen(2))
			g.Expect(vifs["0"].Ref).To(Equal(before.Ref), "moved, not replaced")
			g.Expect(vifs["0"].Network).To(Equal(network(g, netEth1).Ref))
			g.Expect(vifs["0"].MAC).To(Equal(before.MAC))
			g.Expect(vifs["0"].CurrentlyAttached && vifs["1"].CurrentlyAttached).To(BeTrue())
			st := getVM(g, obj).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionNetworkSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionRestartRequired, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationApplied))
			g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
		}, 20*time.Second).Should(Succeed())
	})

	It("adds an interface to a running guest that cannot hotplug at its next halt", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-pv"},
			Spec: vmSpec("pool", "Other install media", virtv1alpha1.PowerStateRunning)}
		obj.Spec.PowerOffMode = virtv1alpha1.PowerOffHard
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		update(obj, func(vm *virtv1alpha1.XenVM) {
			vm.Spec.NetworkInterfaces = []virtv1alpha1.NetworkInterface{nic("eth0", netManagement)}
		})
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionNetworkSynced, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationPending))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionRestartRequired, metav1.ConditionTrue, virtv1alpha1.ReasonConfigurationPending))
		}, 10*time.Second).Should(Succeed())
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.PowerState = virtv1alpha1.PowerStateHalted })
		waitPower(obj, virtv1alpha1.PowerStateHalted)
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.PowerState = virtv1alpha1.PowerStateRunning })
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		Eventually(func(g Gomega) {
			vifs := vifsOf(g, vmOf(g, obj))
			g.Expect(vifs).To(HaveKey("0"))
			g.Expect(vifs["0"].CurrentlyAttached).To(BeTrue())
			g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionNetworkSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
		}, 10*time.Second).Should(Succeed())
	})

	It("reports a missing network, an ISO SR and another host's local SR clearly, without calling xapi again and again", func() {
		// A pool of its own: the calls counted are these XenVMs' only.
		own := startSim(xapisim.Config{Hosts: 2, OpDuration: 30 * time.Millisecond, BootDelay: 50 * time.Millisecond})
		host := newHost(ns, "own", own.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
		sessions := xenapi.NewSessions(xenapi.Options{Originator: "controller-tests"})
		DeferCleanup(func() { sessions.Close(ctx) })
		ownXen, err := sessions.Client("own", xenapi.Endpoint{URL: own.URL(), Username: "root", Password: "xenserver"})
		Expect(err).NotTo(HaveOccurred())
		before := own.Stats()
		noNet := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-net"},
			Spec: vmSpec("own", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		noNet.Spec.NetworkInterfaces = []virtv1alpha1.NetworkInterface{nic("eth0", "VLAN 999")}
		Expect(k8sClient.Create(ctx, noNet)).To(Succeed())
		iso := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "on-iso"},
			Spec: vmSpec("own", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		iso.Spec.Disks = []virtv1alpha1.Disk{{Name: "data", Size: "1Gi", Storage: srISO}}
		Expect(k8sClient.Create(ctx, iso)).To(Succeed())
		elsewhere := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "elsewhere"},
			Spec: vmSpec("own", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		elsewhere.Spec.AffinityHost = "xcp-ng-01"
		elsewhere.Spec.Disks = []virtv1alpha1.Disk{{Name: "data", Size: "1Gi", Storage: localSRIn(Default, ownXen, "xcp-ng-02").UUID}}
		Expect(k8sClient.Create(ctx, elsewhere)).To(Succeed())
		Eventually(func(g Gomega) {
			st := getVM(g, noNet).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionNetworkSynced, metav1.ConditionFalse, virtv1alpha1.ReasonNetworkNotFound))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonNetworkNotFound))
			g.Expect(condition(st.Conditions, virtv1alpha1.ConditionNetworkSynced).Message).To(ContainSubstring("VLAN 999"))
			st = getVM(g, iso).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionDisksSynced, metav1.ConditionFalse, virtv1alpha1.ReasonStorageNotSuitable))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonStorageNotSuitable))
			st = getVM(g, elsewhere).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionDisksSynced, metav1.ConditionFalse, virtv1alpha1.ReasonStorageConflict))
			g.Expect(condition(st.Conditions, virtv1alpha1.ConditionDisksSynced).Message).To(ContainSubstring("affinityHost"))
		}, 20*time.Second).Should(Succeed())
		Expect(getVM(Default, noNet).Status.PowerState).To(Equal(virtv1alpha1.PowerStateHalted), "not started without its network")
		Expect(getVM(Default, iso).Status.UUID).To(BeEmpty(), "not installed on storage that cannot hold it")

		settled := own.Stats()
		time.Sleep(3 * time.Second)
		calls, byMethod := callsExcept(own.Stats(), settled, "event.", "session.")
		Expect(calls).To(BeZero(), "%v", byMethod)
		calls, byMethod = callsExcept(settled, before, "event.", "session.")
		Expect(byMethod).NotTo(HaveKey("VDI.create"))
		Expect(byMethod).NotTo(HaveKey("VIF.create"))
		Expect(byMethod).To(HaveKeyWithValue("VM.clone", 1), "storage that cannot be used is found before the clone")
		GinkgoWriter.Printf("calls: %d %v\n", calls, byMethod)

		By("creating the network: the VM gets its interface and starts")
		// The operator looks at the pool again within requeuePoolProblem;
		// here the spec change wakes it at once.
		update(noNet, func(vm *virtv1alpha1.XenVM) { vm.Spec.NetworkInterfaces[0].Network = netVLAN })
		waitPowerIn(ownXen, noNet, virtv1alpha1.PowerStateRunning)
	})

	It("reports a full SR, and backs off instead of asking again and again", func() {
		local := localSR(Default, "xcp-ng-02")
		// Leave 512 MiB free on the host's local (LVM) SR, as if other disks
		// filled it; restore it afterwards.
		sizes := simSRSizes(Default, http.MethodGet, "")
		i := slices.IndexFunc(sizes, func(s xapisim.SRSize) bool { return s.UUID == local.UUID })
		Expect(i).To(BeNumerically(">=", 0))
		DeferCleanup(func() {
			simSRSizes(Default, http.MethodPost, fmt.Sprintf("name=%s&physical_size=%d", local.UUID, sizes[i].PhysicalSize))
		})
		simSRSizes(Default, http.MethodPost, fmt.Sprintf("name=%s&free=%d", local.UUID, 512<<20))

		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "full"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.Disks = []virtv1alpha1.Disk{{Name: "data", Size: "1Gi", Storage: local.UUID}}
		before := sim.Stats()
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionDisksSynced, metav1.ConditionFalse, virtv1alpha1.ReasonStorageFull))
			g.Expect(condition(st.Conditions, virtv1alpha1.ConditionDisksSynced).Message).To(ContainSubstring("retrying in"))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonStorageFull))
		}, 20*time.Second).Should(Succeed())
		time.Sleep(3 * time.Second) // the test backoff reaches 3 s: a handful of attempts
		_, byMethod := callsExcept(sim.Stats(), before, "event.", "session.")
		Expect(byMethod["VDI.create"]).To(And(BeNumerically(">=", 2), BeNumerically("<=", 6)), "%v", byMethod)
		Expect(getVM(Default, obj).Status.PowerState).To(Equal(virtv1alpha1.PowerStateHalted), "not started without its disk")

		By("freeing space: the disk is created and the VM starts")
		simSRSizes(Default, http.MethodPost, fmt.Sprintf("name=%s&physical_size=%d", local.UUID, sizes[i].PhysicalSize))
		waitPower(obj, virtv1alpha1.PowerStateRunning)
	})

	It("keeps a disk another VM uses when one of its VMs is deleted", func() {
		a := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateHalted)}
		a.Spec.Disks = []virtv1alpha1.Disk{{Name: "shared", Size: "1Gi"}}
		b := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "b"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateHalted)}
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		Expect(k8sClient.Create(ctx, b)).To(Succeed())
		waitPower(b, virtv1alpha1.PowerStateHalted)
		var shared *xenapi.VDI
		Eventually(func(g Gomega) {
			for dev, d := range disksOfVM(g, vmOf(g, a)) {
				if dev != "0" {
					shared = d.vdi
				}
			}
			g.Expect(shared).NotTo(BeNil())
		}, 20*time.Second).Should(Succeed())

		By("attaching a's disk to b outside the operator")
		vmB := vmOf(Default, b)
		_, err := xen.CreateVBD(ctx, xenapi.VBDSpec{VM: vmB.Ref, VDI: shared.Ref, Userdevice: "4"})
		Expect(err).NotTo(HaveOccurred())

		uuidA := vmOf(Default, a).UUID
		Expect(k8sClient.Delete(ctx, a)).To(Succeed())
		Eventually(func(g Gomega) {
			_, err := xen.VMByUUID(ctx, uuidA)
			g.Expect(xenapi.IsUUIDInvalid(err)).To(BeTrue(), "a's VM is destroyed")
		}, 20*time.Second).Should(Succeed())
		kept, err := xen.VDI(ctx, shared.Ref)
		Expect(err).NotTo(HaveOccurred(), "the shared disk survives")
		Expect(kept.OtherConfig).NotTo(HaveKey(vmservice.TagUID))
		Expect(disksOfVM(Default, vmOf(Default, b))).To(HaveKey("4"))
	})

	It("keeps Ready false until the guest reports an address that is not link-local, inside the CIDR", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ready"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateHalted)}
		obj.Spec.NetworkInterfaces = []virtv1alpha1.NetworkInterface{nic("eth0", netManagement)}
		obj.Spec.Readiness = &virtv1alpha1.Readiness{WaitForAddress: true, AddressCIDR: "10.0.0.0/8"}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateHalted)
		// The guest's DHCP answers late: a link-local address for 2 s first.
		simControl(Default, http.MethodPost, "guest", "vm="+vmOf(Default, obj).UUID+"&mode=linklocal&duration=2s")
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.PowerState = virtv1alpha1.PowerStateRunning })
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
			g.Expect(st.IPAddresses).To(ContainElement(HavePrefix("169.254.")))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonWaitingForAddress))
		}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		st := getVM(Default, obj).Status
		Expect(st.IPAddresses[0]).To(HavePrefix("10."))
		Expect(st.NetworkInterfaces[0].IPAddresses).To(ContainElement(st.IPAddresses[0]))

		By("a CIDR no address is in keeps it waiting")
		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.Readiness.AddressCIDR = "192.0.2.0/24" })
		Eventually(func(g Gomega) {
			g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonWaitingForAddress))
		}, 10*time.Second).Should(Succeed())
	})
})
