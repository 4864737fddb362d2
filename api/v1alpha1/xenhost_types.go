package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LocalSecretReference names a Secret in the namespace of the referring object.
type LocalSecretReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// XenHostSpec describes how to reach a XenServer or XCP-ng host.
type XenHostSpec struct {
	// address is the URL of the host's XenAPI endpoint, for example
	// https://xenserver-01.example.com or http://192.0.2.10. For a pool, name
	// the coordinator or any member: the operator follows the pool to its
	// coordinator. May be changed; the operator reconnects.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') || self.startsWith('http://')",message="address must be an http:// or https:// URL"
	Address string `json:"address"`

	// credentialsSecretRef names a Secret in the same namespace holding the
	// keys `username` and `password` of a XenServer account. Rotating the
	// Secret's content makes the operator log in again.
	// +required
	CredentialsSecretRef LocalSecretReference `json:"credentialsSecretRef"`
}

// XenHostStatus is what the operator last observed of the host.
type XenHostStatus struct {
	// uuid is the host's XenServer UUID.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UUID string `json:"uuid,omitempty"`

	// hostname is the host's hostname as xapi reports it.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Hostname string `json:"hostname,omitempty"`

	// conditions describe the host's connection and readiness.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the metadata.generation this status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=xh
// +kubebuilder:printcolumn:name="Hostname",type=string,JSONPath=`.status.hostname`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// XenHost is a XenServer or XCP-ng host (or pool coordinator) the operator
// manages VMs on, with the credentials to reach it.
type XenHost struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes how to reach the host.
	// +required
	Spec XenHostSpec `json:"spec"`

	// status is what the operator last observed of the host.
	// +optional
	Status XenHostStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// XenHostList contains a list of XenHost.
type XenHostList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []XenHost `json:"items"`
}
