package controller

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/kdomanski/iso9660"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

const userData = "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest test@example\n"

const networkConfig = `version: 2
ethernets:
  eth0:
    addresses: [192.0.2.10/24]
    gateway4: 192.0.2.1
`

// configDrives reads the VDIs tagged as the XenVM's config drive.
func configDrives(g Gomega, obj *virtv1alpha1.XenVM) []*xenapi.VDI {
	name := getVM(g, obj).Name + " config drive"
	vdis, err := xen.VDIsByName(ctx, name)
	g.Expect(err).NotTo(HaveOccurred())
	var out []*xenapi.VDI
	for _, v := range vdis {
		if v.OtherConfig[vmservice.TagUID] == mustUID(obj) {
			out = append(out, v)
		}
	}
	return out
}

// exportRaw reads a VDI back through the simulator's GET /export_raw_vdi.
func exportRaw(g Gomega, vdi string) []byte {
	data, err := xen.ExportRawVDI(ctx, vdi)
	g.Expect(err).NotTo(HaveOccurred())
	return data
}

// isoFiles reads the files at an ISO image's root with kdomanski/iso9660,
// another library than the one that wrote it (see the configdrive tests for
// why the Rock Ridge identifier is renamed first).
func isoFiles(g Gomega, img []byte) (string, map[string]string) {
	img = bytes.Replace(img, []byte("IEEE_P1282"), []byte("RRIP_1991A"), 1)
	image, err := iso9660.OpenImage(bytes.NewReader(img))
	g.Expect(err).NotTo(HaveOccurred())
	label, err := image.Label()
	g.Expect(err).NotTo(HaveOccurred())
	root, err := image.RootDir()
	g.Expect(err).NotTo(HaveOccurred())
	children, err := root.GetChildren()
	g.Expect(err).NotTo(HaveOccurred())
	files := map[string]string{}
	for _, c := range children {
		data, err := io.ReadAll(c.Reader())
		g.Expect(err).NotTo(HaveOccurred())
		files[c.Name()] = string(data)
	}
	return string(bytes.TrimRight([]byte(label), " \x00")), files
}

// guestHostname is the hostname the guest agent reports.
func guestHostname(gm *xenapi.GuestMetrics) string {
	if h := gm.OSVersion["hostname"]; h != "" {
		return h
	}
	return gm.Other["hostname"]
}

var _ = Describe("cloud-init", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		host := newHost(ns, "pool", sim.URL(), "xenserver")
		expectHostCondition(host, virtv1alpha1.ConditionReady, metav1.ConditionTrue, virtv1alpha1.ReasonConnected)
	})

	newSecret := func(name string, data map[string]string) {
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data})).To(Succeed())
	}

	It("starts a VM with its config drive attached; the guest reports the hostname and address from it", func() {
		newSecret("web-init", map[string]string{"user-data": userData, "network": networkConfig})
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.NetworkInterfaces = []virtv1alpha1.NetworkInterface{nic("eth0", netManagement)}
		obj.Spec.CloudInit = &virtv1alpha1.CloudInit{
			UserDataSecretRef:      &virtv1alpha1.DataSecretKeyReference{Name: "web-init", Key: "user-data"},
			NetworkConfigSecretRef: &virtv1alpha1.DataSecretKeyReference{Name: "web-init", Key: "network"},
		}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)

		drives := configDrives(Default, obj)
		Expect(drives).To(HaveLen(1))
		st := getVM(Default, obj).Status
		Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionTrue, virtv1alpha1.ReasonInSync))
		Expect(st.CloudInit).NotTo(BeNil())
		Expect(st.CloudInit.VDIUUID).To(Equal(drives[0].UUID))
		Expect(st.CloudInit.InstanceID).To(Equal(st.UUID), "the first drive's instance-id is the VM's UUID")
		Expect(drives[0].VBDs).To(HaveLen(1))

		label, files := isoFiles(Default, exportRaw(Default, drives[0].Ref))
		Expect(label).To(Equal("cidata"))
		Expect(files).To(HaveKeyWithValue("user-data", userData))
		Expect(files).To(HaveKeyWithValue("network-config", networkConfig))
		Expect(files["meta-data"]).To(And(ContainSubstring("instance-id: "+st.UUID), ContainSubstring("local-hostname: web-1")))

		Eventually(func(g Gomega) {
			vm := vmOf(g, obj)
			gm, err := xen.GuestMetrics(ctx, vm.GuestMetrics)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(guestHostname(gm)).To(Equal("web-1"))
			g.Expect(getVM(g, obj).Status.IPAddresses).To(ContainElement("192.0.2.10"))
		}, 10*time.Second).Should(Succeed())

		By("deleting it: the drive goes with the VM")
		Expect(k8sClient.Delete(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			_, err := xen.VDI(ctx, drives[0].Ref)
			g.Expect(xenapi.IsHandleInvalid(err)).To(BeTrue())
		}, 20*time.Second).Should(Succeed())
	})

	It("does not start a VM whose Secret lacks the key, and goes on once it has it", func() {
		newSecret("partial", map[string]string{"other": "x"})
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "waits"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.CloudInit = &virtv1alpha1.CloudInit{UserDataSecretRef: &virtv1alpha1.DataSecretKeyReference{Name: "partial", Key: "user-data"}}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionFalse, virtv1alpha1.ReasonDataSecretKeyNotFound))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionReady, metav1.ConditionFalse, virtv1alpha1.ReasonDataSecretKeyNotFound))
			g.Expect(st.UUID).NotTo(BeEmpty())
		}, 20*time.Second).Should(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(vmOf(g, obj).PowerState).To(Equal(xenapi.PowerStateHalted))
		}, time.Second).Should(Succeed())
		Expect(configDrives(Default, obj)).To(BeEmpty())

		By("adding the key: the Secret's change wakes the XenVM")
		secret := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "partial"}, secret)).To(Succeed())
		secret.StringData = map[string]string{"user-data": userData}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		Expect(configDrives(Default, obj)).To(HaveLen(1))
	})

	It("resumes after a crash after VDI.create and after the upload, without a second drive", func() {
		for i, uploaded := range []bool{false, true} {
			obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("crash-%d", i)},
				Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
			obj.Spec.CloudInit = &virtv1alpha1.CloudInit{UserDataSecretRef: &virtv1alpha1.DataSecretKeyReference{Name: obj.Name, Key: "user-data"}}
			Expect(k8sClient.Create(ctx, obj)).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(getVM(g, obj).Status.Conditions).To(haveCondition(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionFalse, virtv1alpha1.ReasonDataSecretNotFound))
			}, 20*time.Second).Should(Succeed())

			By("leaving what a process that crashed left: a tagged drive, written or not")
			vm := vmOf(Default, obj)
			pool, err := xen.PoolRecord(ctx)
			Expect(err).NotTo(HaveOccurred())
			o := ownerOf(obj)
			ref, err := xen.CreateVDI(ctx, xenapi.VDISpec{NameLabel: vm.NameLabel + " config drive", SR: pool.DefaultSR, VirtualSize: 1 << 20,
				OtherConfig: map[string]string{vmservice.TagUID: o.UID, vmservice.TagOwner: o.Key(), vmservice.TagRole: vmservice.RoleConfigDrive}})
			Expect(err).NotTo(HaveOccurred())
			if uploaded {
				Expect(xen.ImportRawVDI(ctx, ref, bytes.Repeat([]byte{0xAB}, 4096))).To(Succeed())
			}
			// A restarted manager's first sync shows what the crash left
			// before any reconcile; here the event stream must show it
			// before the Secret wakes the XenVM.
			time.Sleep(time.Second)
			newSecret(obj.Name, map[string]string{"user-data": userData})
			waitPower(obj, virtv1alpha1.PowerStateRunning)
			drives := configDrives(Default, obj)
			Expect(drives).To(HaveLen(1))
			Expect(drives[0].Ref).To(Equal(ref), "the drive the crash left, written and attached")
			_, files := isoFiles(Default, exportRaw(Default, ref))
			Expect(files).To(HaveKeyWithValue("user-data", userData))
		}
	})

	It("follows xapi's redirect to the host whose local SR holds the drive", func() {
		local := localSR(Default, "xcp-ng-02")
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "on-local"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.Disks = []virtv1alpha1.Disk{{Name: "root", Storage: local.UUID}}
		obj.Spec.CloudInit = &virtv1alpha1.CloudInit{UserData: userData, MetaData: map[string]string{"local-hostname": "db.example"}}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		drives := configDrives(Default, obj)
		Expect(drives).To(HaveLen(1))
		Expect(drives[0].SR).To(Equal(local.Ref), "the drive is on the SR of the root disk")
		_, files := isoFiles(Default, exportRaw(Default, drives[0].Ref))
		Expect(files["meta-data"]).To(ContainSubstring("local-hostname: db.example"))
	})

	It("writes a changed cloudInit to a new drive while the VM is halted, and waits while it runs", func() {
		obj := &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "changes"},
			Spec: vmSpec("pool", "Debian Bookworm 12", virtv1alpha1.PowerStateRunning)}
		obj.Spec.CloudInit = &virtv1alpha1.CloudInit{UserData: userData}
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		waitPower(obj, virtv1alpha1.PowerStateRunning)
		first := configDrives(Default, obj)
		Expect(first).To(HaveLen(1))

		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.CloudInit.UserData = userData + "packages: [nginx]\n" })
		Eventually(func(g Gomega) {
			st := getVM(g, obj).Status
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionBootstrapReady, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationPending))
			g.Expect(st.Conditions).To(haveCondition(virtv1alpha1.ConditionRestartRequired, metav1.ConditionTrue, virtv1alpha1.ReasonConfigurationPending))
		}, 10*time.Second).Should(Succeed())

		update(obj, func(vm *virtv1alpha1.XenVM) { vm.Spec.PowerState = virtv1alpha1.PowerStateHalted })
		Eventually(func(g Gomega) {
			drives := configDrives(g, obj)
			g.Expect(drives).To(HaveLen(1))
			g.Expect(drives[0].Ref).NotTo(Equal(first[0].Ref))
			st := getVM(g, obj).Status
			g.Expect(st.CloudInit).NotTo(BeNil())
			g.Expect(st.CloudInit.InstanceID).To(HavePrefix(st.UUID+"-"), "a new instance-id: cloud-init applies it at the next boot")
			_, files := isoFiles(g, exportRaw(g, drives[0].Ref))
			g.Expect(files["user-data"]).To(ContainSubstring("nginx"))
		}, 20*time.Second).Should(Succeed())
		_, err := xen.VDI(context.Background(), first[0].Ref)
		Expect(xenapi.IsHandleInvalid(err)).To(BeTrue(), "the old drive is gone")
	})
})
