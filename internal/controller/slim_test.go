package controller

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	. "github.com/onsi/gomega"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
)

// runningXenVM is a XenVM of the scale benchmark as the API server sends
// it once Running: defaulted spec, managed fields, the status the
// controller writes.
const runningXenVM = `{
 "apiVersion": "virt.xen-operator.io/v1alpha1", "kind": "XenVM",
 "metadata": {"name": "vm-%[1]d", "namespace": "bench", "uid": "0f6c1f9e-3a47-4c1e-9a55-%012[1]d",
  "resourceVersion": "%[1]d", "generation": 1, "creationTimestamp": "2026-12-01T08:16:29Z",
  "labels": {"virt.xen-operator.io/xenhost": "bench"}, "finalizers": ["virt.xen-operator.io/xenvm"],
  "managedFields": [{"manager": "bench", "operation": "Update", "apiVersion": "virt.xen-operator.io/v1alpha1",
   "time": "2026-12-01T08:16:29Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {}}}}]},
 "spec": {"hostRef": {"name": "bench"}, "template": "Debian Bookworm 12", "managementPolicy": "Managed",
  "powerState": "Running", "powerOffMode": "Clean", "deletionPolicy": "Delete", "haRestartPriority": "",
  "networkInterfaces": [{"name": "eth0", "network": "Pool-wide network associated with eth0"}],
  "disks": [{"name": "root", "size": "20Gi"}]},
 "status": {"uuid": "6d2f7a3c-1b0e-4f7d-8c2a-%012[1]d", "powerState": "Running", "phase": "Running",
  "residentOn": "xcp-ng-01", "ipAddresses": ["10.0.%[2]d.%[3]d"],
  "networkInterfaces": [{"name": "eth0", "device": 0, "network": "Pool-wide network associated with eth0",
   "macAddress": "aa:bb:cc:00:%02[2]x:%02[3]x", "attached": true, "ipAddresses": ["10.0.%[2]d.%[3]d"]}],
  "disks": [{"name": "root", "device": 0, "size": "20Gi", "storage": "Local storage", "vdiUUID": "a1b2c3d4-0000-4000-8000-%012[1]d", "attached": true}],
  "conditions": [
   {"type": "HostAvailable", "status": "True", "reason": "Connected", "message": "XenHost bench is connected", "lastTransitionTime": "2026-12-01T08:16:30Z", "observedGeneration": 1},
   {"type": "Provisioned", "status": "True", "reason": "Provisioned", "message": "Installed from template Debian Bookworm 12", "lastTransitionTime": "2026-12-01T08:16:30Z", "observedGeneration": 1},
   {"type": "NetworkSynced", "status": "True", "reason": "InSync", "message": "1 network interface attached", "lastTransitionTime": "2026-12-01T08:16:30Z", "observedGeneration": 1},
   {"type": "DisksSynced", "status": "True", "reason": "InSync", "message": "1 disk attached", "lastTransitionTime": "2026-12-01T08:16:30Z", "observedGeneration": 1},
   {"type": "PowerStateSynced", "status": "True", "reason": "InSync", "message": "VM is Running", "lastTransitionTime": "2026-12-01T08:16:31Z", "observedGeneration": 1},
   {"type": "Ready", "status": "True", "reason": "InSync", "message": "VM is Running", "lastTransitionTime": "2026-12-01T08:16:31Z", "observedGeneration": 1}],
  "observedGeneration": 1}}`

func decodeRunningXenVM(tb testing.TB, i int) *virtv1alpha1.XenVM {
	tb.Helper()
	vm := &virtv1alpha1.XenVM{}
	if err := json.Unmarshal(fmt.Appendf(nil, runningXenVM, i, i/256%256, i%256), vm); err != nil {
		tb.Fatal(err)
	}
	return vm
}

// The XenVM informer keeps one copy of the values that repeat from XenVM
// to XenVM; what it keeps reads as the API server sent it, less the
// managed fields.
func TestSlimXenVMSharesRepeatedValues(t *testing.T) {
	g := NewWithT(t)
	a, b := decodeRunningXenVM(t, 1), decodeRunningXenVM(t, 2)
	want := a.DeepCopy()
	want.ManagedFields = nil
	for _, vm := range []*virtv1alpha1.XenVM{a, b} {
		_, err := slimXenVM(vm)
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(a).To(Equal(want))

	shared := func(x, y string) bool { return x != "" && unsafe.StringData(x) == unsafe.StringData(y) }
	for what, pair := range map[string][2]string{
		"namespace":      {a.Namespace, b.Namespace},
		"label":          {a.Labels[LabelXenHost], b.Labels[LabelXenHost]},
		"finalizer":      {a.Finalizers[0], b.Finalizers[0]},
		"template":       {a.Spec.Template, b.Spec.Template},
		"power policy":   {string(a.Spec.PowerOffMode), string(b.Spec.PowerOffMode)},
		"network":        {a.Spec.NetworkInterfaces[0].Network, b.Spec.NetworkInterfaces[0].Network},
		"phase":          {string(a.Status.Phase), string(b.Status.Phase)},
		"resident on":    {a.Status.ResidentOn, b.Status.ResidentOn},
		"storage":        {a.Status.Disks[0].Storage, b.Status.Disks[0].Storage},
		"condition":      {a.Status.Conditions[1].Message, b.Status.Conditions[1].Message},
		"status network": {a.Status.NetworkInterfaces[0].Network, b.Status.NetworkInterfaces[0].Network},
	} {
		g.Expect(shared(pair[0], pair[1])).To(BeTrue(), "%s stored once", what)
	}
	g.Expect(a.Status.UUID).NotTo(Equal(b.Status.UUID), "per-object values are their own")
}

// BenchmarkXenVMInformerHeap reports the heap ten thousand Running XenVMs
// hold as the informer keeps them, with and without slimXenVM.
func BenchmarkXenVMInformerHeap(b *testing.B) {
	const n = 10000
	for _, tc := range []struct {
		name      string
		transform func(any) (any, error)
	}{{"stripped", stripUnread}, {"slim", slimXenVM}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				kept := make([]any, n)
				for i := range kept {
					o, err := tc.transform(decodeRunningXenVM(b, i))
					if err != nil {
						b.Fatal(err)
					}
					kept[i] = o
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/XenVM")
				runtime.KeepAlive(kept)
			}
		})
	}
}
