// Package v1alpha1 contains the API types of the virt.xen-operator.io group:
// XenHost, a XenServer or XCP-ng host (or pool coordinator) and its
// credentials, and XenVM, a virtual machine installed from a template and kept
// in the power state its spec asks for.
// +kubebuilder:object:generate=true
// +groupName=virt.xen-operator.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is group version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "virt.xen-operator.io", Version: "v1alpha1"}

	// SchemeBuilder collects the functions that add this group-version's types to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&XenHost{}, &XenHostList{},
		&XenVM{}, &XenVMList{},
		&XenVMSnapshot{}, &XenVMSnapshotList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
