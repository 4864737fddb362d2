package v1alpha1

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// The manager's informers decode lists with the scheme's codecs: one item
// that fails to decode would fail the whole list. These tests decode the way
// they do.
func decodeList(t *testing.T, body string) *XenVMList {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	obj, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode([]byte(body), nil, nil)
	if err != nil {
		t.Fatalf("decoding the list: %v", err)
	}
	return obj.(*XenVMList)
}

func TestSpecsDecodeLeniently(t *testing.T) {
	g := NewWithT(t)
	list := decodeList(t, `{"apiVersion":"virt.xen-operator.io/v1alpha1","kind":"XenVMList","items":[
	  {"metadata":{"name":"good"},"spec":{"hostRef":{"name":"pool"},"template":"Debian","softShutdownTimeout":"90s","memory":"2Gi","vcpus":2}},
	  {"metadata":{"name":"bad-duration"},"spec":{"hostRef":{"name":"pool"},"template":"Debian","softShutdownTimeout":"banana","vcpus":2,"deletionPolicy":"Retain"}},
	  {"metadata":{"name":"bad-quantity"},"spec":{"hostRef":{"name":"pool"},"template":"Debian","memory":"lots","operationTimeout":"-5m"}},
	  {"metadata":{"name":"bad-type"},"spec":{"hostRef":{"name":"pool"},"template":"Debian","vcpus":"two"}}
	]}`)
	g.Expect(list.Items).To(HaveLen(4), "one bad item does not fail the list")

	good := list.Items[0].Spec
	g.Expect(good.DecodeError()).To(BeEmpty())
	g.Expect(good.SoftShutdownTimeout.Duration).To(Equal(90 * time.Second))
	g.Expect(good.Memory.Equal(resource.MustParse("2Gi"))).To(BeTrue())

	bad := list.Items[1].Spec
	g.Expect(bad.DecodeError()).To(ContainSubstring("spec.softShutdownTimeout"))
	g.Expect(bad.SoftShutdownTimeout).To(BeNil(), "the bad field is left unset")
	g.Expect(bad.HostRef.Name).To(Equal("pool"), "the other fields decode")
	g.Expect(bad.DeletionPolicy).To(Equal(DeletionPolicyRetain))
	g.Expect(*bad.VCPUs).To(Equal(int32(2)))

	both := list.Items[2].Spec
	g.Expect(both.DecodeError()).To(And(ContainSubstring("spec.memory"), Not(ContainSubstring("operationTimeout"))),
		"a negative duration decodes: the schema rejects it, the decoder need not")
	g.Expect(both.Memory).To(BeNil())

	g.Expect(list.Items[3].Spec.DecodeError()).To(ContainSubstring("spec.vcpus"))

	copied := list.Items[1].DeepCopy()
	g.Expect(copied.Spec.DecodeError()).To(Equal(bad.DecodeError()), "DeepCopy keeps the decode error")
}

func TestXenHostSpecDecodesLeniently(t *testing.T) {
	g := NewWithT(t)
	spec := &XenHostSpec{}
	g.Expect(spec.UnmarshalJSON([]byte(`{"address":"https://x","credentialsSecretRef":{"name":"c"},"maxConcurrentOperations":"many"}`))).To(Succeed())
	g.Expect(spec.DecodeError()).To(ContainSubstring("spec.maxConcurrentOperations"))
	g.Expect(spec.Address).To(Equal("https://x"))
	g.Expect(spec.UnmarshalJSON([]byte(`[1]`))).NotTo(Succeed(), "not an object at all")
}
