package controller

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
)

var _ = Describe("CRDs", func() {
	const namespace = "default"

	It("are installed and established", func() {
		for _, name := range []string{"xenvms.virt.xen-operator.io", "xenhosts.virt.xen-operator.io", "xenvmsnapshots.virt.xen-operator.io"} {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			Expect(k8sClient.Get(ctx, types.NamespacedName{Name: name}, crd)).To(Succeed())
			Expect(crd.Spec.Scope).To(Equal(apiextensionsv1.NamespaceScoped))
			Expect(crd.Spec.Versions).To(HaveLen(1))
			Expect(crd.Spec.Versions[0].Subresources.Status).NotTo(BeNil(), "status subresource of %s", name)
		}
	})

	It("accept a valid XenHost and XenVM and apply defaults", func() {
		host := &virtv1alpha1.XenHost{
			ObjectMeta: metav1.ObjectMeta{Name: "pool-a", Namespace: namespace},
			Spec: virtv1alpha1.XenHostSpec{
				Address:              "https://xenserver.example.com",
				CredentialsSecretRef: virtv1alpha1.LocalSecretReference{Name: "pool-a-credentials"},
			},
		}
		Expect(k8sClient.Create(ctx, host)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, host))).To(Succeed()) })

		vm := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: namespace},
			Spec: virtv1alpha1.XenVMSpec{
				HostRef:  virtv1alpha1.LocalObjectReference{Name: host.Name},
				Template: "Debian Bookworm 12",
			},
		}
		Expect(k8sClient.Create(ctx, vm)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, vm))).To(Succeed()) })

		got := &virtv1alpha1.XenVM{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(vm), got)).To(Succeed())
		Expect(got.Spec.PowerState).To(Equal(virtv1alpha1.PowerStateRunning), "powerState defaults to Running")

		By("writing status through the status subresource")
		patch := client.MergeFrom(got.DeepCopy())
		got.Status.PowerState = virtv1alpha1.PowerStateHalted
		Expect(k8sClient.Status().Patch(ctx, got, patch)).To(Succeed())
		Expect(got.Status.PowerState).To(Equal(virtv1alpha1.PowerStateHalted), "as the API server stored it")
		Expect(got.Spec.PowerState).To(Equal(virtv1alpha1.PowerStateRunning))
	})

	DescribeTable("reject what cannot be honoured",
		func(obj client.Object, message string) {
			obj.SetNamespace(namespace)
			err := k8sClient.Create(ctx, obj)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("a XenHost address that is not a URL",
			&virtv1alpha1.XenHost{
				ObjectMeta: metav1.ObjectMeta{Name: "bad-address"},
				Spec: virtv1alpha1.XenHostSpec{
					Address:              "xenserver.example.com",
					CredentialsSecretRef: virtv1alpha1.LocalSecretReference{Name: "creds"},
				},
			},
			"address must be an http:// or https:// URL"),
		Entry("a XenVM without a host reference",
			&virtv1alpha1.XenVM{
				ObjectMeta: metav1.ObjectMeta{Name: "no-host"},
				Spec:       virtv1alpha1.XenVMSpec{Template: "Debian Bookworm 12"},
			},
			"spec.hostRef.name"),
		Entry("a XenVM with an unknown power state",
			&virtv1alpha1.XenVM{
				ObjectMeta: metav1.ObjectMeta{Name: "bad-power"},
				Spec: virtv1alpha1.XenVMSpec{
					HostRef:    virtv1alpha1.LocalObjectReference{Name: "pool-a"},
					Template:   "Debian Bookworm 12",
					PowerState: "Sleeping",
				},
			},
			`supported values: "Running", "Halted", "Suspended", "Paused"`),
		Entry("a XenVM with too little memory",
			&virtv1alpha1.XenVM{
				ObjectMeta: metav1.ObjectMeta{Name: "tiny"},
				Spec: virtv1alpha1.XenVMSpec{
					HostRef: virtv1alpha1.LocalObjectReference{Name: "pool-a"}, Template: "Debian Bookworm 12",
					Memory: ptr(resource.MustParse("1Mi")),
				},
			},
			"memory must be at least 64Mi"),
		Entry("a XenVM with impossible memory",
			&virtv1alpha1.XenVM{
				ObjectMeta: metav1.ObjectMeta{Name: "huge"},
				Spec: virtv1alpha1.XenVMSpec{
					HostRef: virtv1alpha1.LocalObjectReference{Name: "pool-a"}, Template: "Debian Bookworm 12",
					Memory: ptr(resource.MustParse("1Pi")),
				},
			},
			"memory must be at most 6Ti"),
		Entry("a XenVM with zero VCPUs",
			&virtv1alpha1.XenVM{
				ObjectMeta: metav1.ObjectMeta{Name: "no-cpu"},
				Spec: virtv1alpha1.XenVMSpec{
					HostRef: virtv1alpha1.LocalObjectReference{Name: "pool-a"}, Template: "Debian Bookworm 12",
					VCPUs: ptr(int32(0)),
				},
			},
			"spec.vcpus: Invalid value: 0: spec.vcpus in body should be greater than or equal to 1"),
		Entry("a XenVM using the operator's otherConfig keys",
			&virtv1alpha1.XenVM{
				ObjectMeta: metav1.ObjectMeta{Name: "reserved"},
				Spec: virtv1alpha1.XenVMSpec{
					HostRef: virtv1alpha1.LocalObjectReference{Name: "pool-a"}, Template: "Debian Bookworm 12",
					OtherConfig: map[string]string{"xen-operator.io/uid": "forged"},
				},
			},
			"otherConfig keys under xen-operator.io/ are reserved for the operator"),
		Entry("a XenHost with a CA and insecureSkipVerify",
			&virtv1alpha1.XenHost{
				ObjectMeta: metav1.ObjectMeta{Name: "confused-tls"},
				Spec: virtv1alpha1.XenHostSpec{
					Address:              "https://xenserver.example.com",
					CredentialsSecretRef: virtv1alpha1.LocalSecretReference{Name: "creds"},
					TLS:                  &virtv1alpha1.XenHostTLS{CABundle: "-----BEGIN CERTIFICATE-----", InsecureSkipVerify: true},
				},
			},
			"insecureSkipVerify makes a CA pointless"),
		Entry("a XenHost at an http:// address without the opt-in",
			&virtv1alpha1.XenHost{
				ObjectMeta: metav1.ObjectMeta{Name: "plain-http"},
				Spec: virtv1alpha1.XenHostSpec{
					Address:              "http://xenserver.example.com",
					CredentialsSecretRef: virtv1alpha1.LocalSecretReference{Name: "creds"},
				},
			},
			"an http:// address sends the credentials and the session in clear text"),
		Entry("a XenHost address with credentials in it",
			&virtv1alpha1.XenHost{
				ObjectMeta: metav1.ObjectMeta{Name: "userinfo"},
				Spec: virtv1alpha1.XenHostSpec{
					Address:              "https://root:secret@xenserver.example.com",
					CredentialsSecretRef: virtv1alpha1.LocalSecretReference{Name: "creds"},
				},
			},
			"address must not carry credentials"),
		Entry("a XenVM soft shutdown timeout that is not a duration", vmWithSpec("banana-timeout", "softShutdownTimeout", "banana"),
			`spec.softShutdownTimeout in body should match`),
		Entry("a negative soft shutdown timeout", vmWithSpec("negative-timeout", "softShutdownTimeout", "-5s"),
			`spec.softShutdownTimeout in body should match`),
		Entry("a zero soft shutdown timeout", vmWithSpec("zero-timeout", "softShutdownTimeout", "0s"),
			"softShutdownTimeout must be between 1s and 24h"),
		Entry("a soft shutdown timeout beyond a day", vmWithSpec("long-timeout", "softShutdownTimeout", "25h"),
			"softShutdownTimeout must be between 1s and 24h"),
		Entry("a soft shutdown timeout as a number", vmWithSpec("number-timeout", "softShutdownTimeout", int64(120)),
			"spec.softShutdownTimeout: Invalid value"),
		Entry("an operation timeout that is not a duration", vmWithSpec("banana-op", "operationTimeout", "10 minutes"),
			`spec.operationTimeout in body should match`),
		Entry("an operation timeout too short to start a VM", vmWithSpec("short-op", "operationTimeout", "5s"),
			"operationTimeout must be between 10s and 24h"),
		Entry("a memory that is not a quantity", vmWithSpec("lots-of-memory", "memory", "lots"),
			`spec.memory in body should match`),
		Entry("vcpus as a string", vmWithSpec("string-cpus", "vcpus", "two"),
			`spec.vcpus: Invalid value: "string": spec.vcpus in body must be of type integer`),
		Entry("a XenHost with an operation cap of zero",
			&virtv1alpha1.XenHost{
				ObjectMeta: metav1.ObjectMeta{Name: "no-ops"},
				Spec: virtv1alpha1.XenHostSpec{
					Address:                 "https://xenserver.example.com",
					CredentialsSecretRef:    virtv1alpha1.LocalSecretReference{Name: "creds"},
					MaxConcurrentOperations: ptr(int32(0)),
				},
			},
			"spec.maxConcurrentOperations in body should be greater than or equal to 1"),
		Entry("two interfaces with one name", vmWithSpec("dup-nic-name", "networkInterfaces", []any{
			map[string]any{"name": "eth0", "network": "a"}, map[string]any{"name": "eth0", "network": "b"}}),
			`spec.networkInterfaces[1]: Duplicate value: {"name":"eth0"}`),
		Entry("two interfaces on one device", vmWithSpec("dup-nic-device", "networkInterfaces", []any{
			map[string]any{"name": "a", "network": "a", "device": int64(1)}, map[string]any{"name": "b", "network": "b", "device": int64(1)}}),
			"two interfaces have the same device"),
		Entry("two interfaces with one MAC", vmWithSpec("dup-mac", "networkInterfaces", []any{
			map[string]any{"name": "a", "network": "a", "macAddress": "02:00:00:00:00:01"},
			map[string]any{"name": "b", "network": "b", "macAddress": "02:00:00:00:00:01"}}),
			"two interfaces have the same macAddress"),
		Entry("a MAC that is not one", vmWithSpec("bad-mac", "networkInterfaces", []any{
			map[string]any{"name": "a", "network": "a", "macAddress": "02:00:00:00:01"}}),
			`spec.networkInterfaces[0].macAddress in body should match`),
		Entry("a multicast MAC", vmWithSpec("multicast-mac", "networkInterfaces", []any{
			map[string]any{"name": "a", "network": "a", "macAddress": "01:00:5e:00:00:01"}}),
			`spec.networkInterfaces[0].macAddress in body should match`),
		Entry("an interface device out of range", vmWithSpec("nic-device-16", "networkInterfaces", []any{
			map[string]any{"name": "a", "network": "a", "device": int64(16)}}),
			"should be less than or equal to 15"),
		Entry("an interface without a network", vmWithSpec("nic-no-network", "networkInterfaces", []any{
			map[string]any{"name": "a"}}),
			"spec.networkInterfaces[0].network: Required value"),
		Entry("an interface name that is not a DNS label", vmWithSpec("nic-bad-name", "networkInterfaces", []any{
			map[string]any{"name": "Eth_0", "network": "a"}}),
			`spec.networkInterfaces[0].name in body should match`),
		Entry("an extra disk without a size", vmWithSpec("disk-no-size", "disks", []any{
			map[string]any{"name": "data"}}),
			"size is required for every disk but root"),
		Entry("a disk of zero bytes", vmWithSpec("disk-zero", "disks", []any{
			map[string]any{"name": "data", "size": "0"}}),
			"size must be between 1Mi and 64Ti"),
		Entry("a disk larger than any SR", vmWithSpec("disk-huge", "disks", []any{
			map[string]any{"name": "data", "size": "1Pi"}}),
			"size must be between 1Mi and 64Ti"),
		Entry("a disk size as a number", vmWithSpec("disk-number", "disks", []any{
			map[string]any{"name": "data", "size": int64(1 << 30)}}),
			`spec.disks[0].size: Invalid value: "integer"`),
		Entry("a disk that is not a quantity", vmWithSpec("disk-lots", "disks", []any{
			map[string]any{"name": "data", "size": "lots"}}),
			`spec.disks[0].size in body should match`),
		Entry("a device for root", vmWithSpec("root-device", "disks", []any{
			map[string]any{"name": "root", "device": int64(2)}}),
			"the root disk's device is the template's"),
		Entry("a disk on device 0", vmWithSpec("disk-device-0", "disks", []any{
			map[string]any{"name": "data", "size": "1Gi", "device": int64(0)}}),
			"should be greater than or equal to 1"),
		Entry("two disks on one device", vmWithSpec("dup-disk-device", "disks", []any{
			map[string]any{"name": "a", "size": "1Gi", "device": int64(2)}, map[string]any{"name": "b", "size": "1Gi", "device": int64(2)}}),
			"two disks have the same device"),
		Entry("an unknown disk deletion policy", vmWithSpec("disk-policy", "disks", []any{
			map[string]any{"name": "a", "size": "1Gi", "deletionPolicy": "Shred"}}),
			`supported values: "Delete", "Retain"`),
		Entry("a readiness CIDR that is not one", vmWithSpec("bad-cidr", "readiness", map[string]any{
			"waitForAddress": true, "addressCIDR": "10.0.0.0/33"}),
			"addressCIDR must be a CIDR"),
		Entry("user data inline and from a Secret", vmWithSpec("two-user-data", "cloudInit", map[string]any{
			"userData": "#cloud-config", "userDataSecretRef": map[string]any{"name": "s", "key": "k"}}),
			"set userData or userDataSecretRef, not both"),
		Entry("network config inline and from a Secret", vmWithSpec("two-network-config", "cloudInit", map[string]any{
			"networkConfig": "version: 2", "networkConfigSecretRef": map[string]any{"name": "s", "key": "k"}}),
			"set networkConfig or networkConfigSecretRef, not both"),
		Entry("a user data Secret without a key", vmWithSpec("secret-no-key", "cloudInit", map[string]any{
			"userDataSecretRef": map[string]any{"name": "s"}}),
			"spec.cloudInit.userDataSecretRef.key: Required value"),
		Entry("a template and a VM to adopt", vmWithSpec("both", "vm", map[string]any{"uuid": "3f1c5c1e-0000-4000-8000-000000000001"}),
			"set template to install a VM or vm to adopt one, exactly one of them"),
		Entry("neither a template nor a VM", &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Name: "neither"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "pool-a"}}},
			"set template to install a VM or vm to adopt one, exactly one of them"),
		Entry("a VM UUID that is not one", &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Name: "bad-uuid"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "pool-a"}, VM: &virtv1alpha1.VMReference{UUID: "web-1"}}},
			"spec.vm.uuid in body should match"),
		Entry("recreateIfMissing for an adopted VM", &virtv1alpha1.XenVM{ObjectMeta: metav1.ObjectMeta{Name: "adopt-recreate"},
			Spec: virtv1alpha1.XenVMSpec{HostRef: virtv1alpha1.LocalObjectReference{Name: "pool-a"}, RecreateIfMissing: true,
				VM: &virtv1alpha1.VMReference{UUID: "3f1c5c1e-0000-4000-8000-000000000001"}}},
			"recreateIfMissing needs a template"),
		Entry("an unknown management policy", vmWithSpec("bad-policy", "managementPolicy", "Ignore"),
			`supported values: "Manage", "Observe"`),
		Entry("a tag twice", vmWithSpec("dup-tag", "tags", []any{"prod", "prod"}),
			`spec.tags[1]: Duplicate value: "prod"`),
		Entry("an empty tag", vmWithSpec("empty-tag", "tags", []any{""}),
			"spec.tags[0] in body should be at least 1 chars long"),
		Entry("an unknown HA restart priority", vmWithSpec("bad-ha", "haRestartPriority", "Always"),
			`supported values: "Restart", "BestEffort", "DoNotRestart"`),
		Entry("a restore naming no snapshot", vmWithSpec("bad-restore", "restoreFrom", map[string]any{"snapshotName": ""}),
			"spec.restoreFrom.snapshotName in body should be at least 1 chars long"),
		Entry("a XenVMSnapshot with an unknown deletion policy",
			&virtv1alpha1.XenVMSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "bad-policy"},
				Spec: virtv1alpha1.XenVMSnapshotSpec{VMRef: virtv1alpha1.LocalObjectReference{Name: "web-1"}, DeletionPolicy: "Keep"}},
			`supported values: "Delete", "Retain"`),
		Entry("a XenVMSnapshot naming no XenVM",
			&virtv1alpha1.XenVMSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "no-vm"}},
			"spec.vmRef.name in body should be at least 1 chars long"),
		Entry("a XenVM with an unknown power-off mode",
			&virtv1alpha1.XenVM{
				ObjectMeta: metav1.ObjectMeta{Name: "bad-mode"},
				Spec: virtv1alpha1.XenVMSpec{
					HostRef: virtv1alpha1.LocalObjectReference{Name: "pool-a"}, Template: "Debian Bookworm 12",
					PowerOffMode: "Yank",
				},
			},
			`supported values: "Soft", "Hard", "TrySoft"`),
	)

	It("lets a disk grow and never shrink, and keeps devices and storage", func() {
		vm := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Name: "disks", Namespace: namespace},
			Spec: virtv1alpha1.XenVMSpec{
				HostRef: virtv1alpha1.LocalObjectReference{Name: "pool-a"}, Template: "Debian Bookworm 12",
				Disks: []virtv1alpha1.Disk{{Name: "root", Size: "20Gi"},
					{Name: "data", Size: "10Gi", Storage: "fast", Device: ptr(int32(2))}},
				NetworkInterfaces: []virtv1alpha1.NetworkInterface{{Name: "eth0", Network: "lan", Device: ptr(int32(0))}},
			},
		}
		Expect(k8sClient.Create(ctx, vm)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, vm))).To(Succeed()) })
		got := &virtv1alpha1.XenVM{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(vm), got)).To(Succeed())
		Expect(got.Spec.Disks[1].DeletionPolicy).To(Equal(virtv1alpha1.DeletionPolicyDelete), "deletionPolicy defaults to Delete")
		for _, tc := range []struct {
			change  func(*virtv1alpha1.XenVM)
			refusal string
		}{
			{func(v *virtv1alpha1.XenVM) { v.Spec.Disks[0].Size = "19Gi" }, "a disk can grow and never shrink"},
			{func(v *virtv1alpha1.XenVM) { v.Spec.Disks[1].Size = "" }, "a disk can grow and never shrink"},
			{func(v *virtv1alpha1.XenVM) { v.Spec.Disks[1].Storage = "slow" }, "a disk's storage cannot change"},
			{func(v *virtv1alpha1.XenVM) { v.Spec.Disks[1].Device = ptr(int32(3)) }, "a disk's device cannot change once set"},
			{func(v *virtv1alpha1.XenVM) { v.Spec.NetworkInterfaces[0].Device = ptr(int32(1)) }, "an interface's device cannot change once set"},
		} {
			Eventually(func(g Gomega) { // the manager writes the object too: retry conflicts
				g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(vm), got)).To(Succeed())
				tc.change(got)
				err := k8sClient.Update(ctx, got)
				g.Expect(err).To(HaveOccurred(), tc.refusal)
				g.Expect(err.Error()).To(ContainSubstring(tc.refusal))
			}).Should(Succeed())
		}
		By("growing, moving an interface, and removing a disk are accepted")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(vm), got)).To(Succeed())
			got.Spec.Disks[0].Size = "25Gi"
			got.Spec.NetworkInterfaces[0].Network = "wan"
			got.Spec.Disks = got.Spec.Disks[:1]
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
	})

	It("accepts durations as Go writes them", func() {
		for i, d := range []string{"1s", "90s", "1m30s", "2h", "1.5h", "24h"} {
			obj := vmWithSpec(fmt.Sprintf("good-duration-%d", i), "softShutdownTimeout", d)
			obj.SetNamespace(namespace)
			Expect(k8sClient.Create(ctx, obj)).To(Succeed(), d)
			DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, obj))).To(Succeed()) })
		}
	})

	It("refuses moving a XenVM to another XenHost", func() {
		vm := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Name: "immutable-host", Namespace: namespace},
			Spec: virtv1alpha1.XenVMSpec{
				HostRef:  virtv1alpha1.LocalObjectReference{Name: "pool-a"},
				Template: "Debian Bookworm 12",
			},
		}
		Expect(k8sClient.Create(ctx, vm)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, vm))).To(Succeed()) })
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(vm), vm)).To(Succeed())
			vm.Spec.HostRef.Name = "pool-b"
			err := k8sClient.Update(ctx, vm)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(ContainSubstring("hostRef is immutable"))
		}).Should(Succeed())
	})

	It("keeps a XenVMSnapshot's XenVM and kind, and defaults its policy to Delete", func() {
		snap := &virtv1alpha1.XenVMSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "immutable-snap", Namespace: namespace},
			Spec: virtv1alpha1.XenVMSnapshotSpec{VMRef: virtv1alpha1.LocalObjectReference{Name: "web-1"}}}
		Expect(k8sClient.Create(ctx, snap)).To(Succeed())
		DeferCleanup(func() {
			// No manager handles the default namespace's objects without a XenHost: drop the finalizer it may have put.
			got := &virtv1alpha1.XenVMSnapshot{}
			if k8sClient.Get(ctx, client.ObjectKeyFromObject(snap), got) == nil {
				got.Finalizers = nil
				_ = k8sClient.Update(ctx, got)
			}
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, snap))).To(Succeed())
		})
		Expect(snap.Spec.DeletionPolicy).To(Equal(virtv1alpha1.DeletionPolicyDelete))
		for _, tc := range []struct {
			change  func(*virtv1alpha1.XenVMSnapshot)
			refusal string
		}{
			{func(s *virtv1alpha1.XenVMSnapshot) { s.Spec.VMRef.Name = "web-2" }, "vmRef is immutable"},
			{func(s *virtv1alpha1.XenVMSnapshot) { s.Spec.Memory = true }, "memory is immutable"},
		} {
			Eventually(func(g Gomega) {
				got := &virtv1alpha1.XenVMSnapshot{}
				g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(snap), got)).To(Succeed())
				tc.change(got)
				err := k8sClient.Update(ctx, got)
				g.Expect(err).To(HaveOccurred())
				g.Expect(err.Error()).To(ContainSubstring(tc.refusal))
			}).Should(Succeed())
		}
	})

	It("refuses a change of template", func() {
		vm := &virtv1alpha1.XenVM{
			ObjectMeta: metav1.ObjectMeta{Name: "immutable-template", Namespace: namespace},
			Spec: virtv1alpha1.XenVMSpec{
				HostRef:  virtv1alpha1.LocalObjectReference{Name: "pool-a"},
				Template: "Debian Bookworm 12",
			},
		}
		Expect(k8sClient.Create(ctx, vm)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, vm))).To(Succeed()) })

		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(vm), vm)).To(Succeed())
			vm.Spec.Template = "Windows Server 2022 (64-bit)"
			err := k8sClient.Update(ctx, vm)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(ContainSubstring("template is immutable"))
		}).Should(Succeed())
	})
})

// vmWithSpec is a XenVM written as a user's manifest would be, with one
// more spec field set to a raw value the Go types could not express.
func vmWithSpec(name, field string, value any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": virtv1alpha1.GroupVersion.String(),
		"kind":       "XenVM",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"hostRef":  map[string]any{"name": "pool-a"},
			"template": "Debian Bookworm 12",
			field:      value,
		},
	}}
	return u
}
