package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PowerState is a XenServer VM power state. The same values serve the desired
// state in spec and the observed state in status.
// +kubebuilder:validation:Enum=Running;Halted;Suspended;Paused
type PowerState string

// The power states of a XenServer VM.
const (
	PowerStateRunning   PowerState = "Running"
	PowerStateHalted    PowerState = "Halted"
	PowerStateSuspended PowerState = "Suspended"
	PowerStatePaused    PowerState = "Paused"
)

// LocalObjectReference names an object in the namespace of the referring object.
type LocalObjectReference struct {
	// name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// XenVMSpec is the VM a user wants.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.template) || self.template == oldSelf.template",message="template is immutable: delete and recreate the XenVM to install from another template"
type XenVMSpec struct {
	// hostRef names the XenHost, in the same namespace, whose pool runs the VM.
	// +required
	HostRef LocalObjectReference `json:"hostRef"`

	// template is the name_label or UUID of the XenServer template the VM is
	// installed from. Immutable once set.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Template string `json:"template"`

	// powerState is the power state the operator keeps the VM in. Defaults to
	// Running; may be changed at any time.
	// +optional
	// +kubebuilder:default=Running
	PowerState PowerState `json:"powerState,omitempty"`
}

// XenVMStatus is what the operator last observed of the VM.
type XenVMStatus struct {
	// uuid is the XenServer UUID of the installed VM.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UUID string `json:"uuid,omitempty"`

	// powerState is the VM's power state as xapi last reported it.
	// +optional
	PowerState PowerState `json:"powerState,omitempty"`

	// conditions describe the VM's installation and power state.
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
// +kubebuilder:resource:shortName=xvm
// +kubebuilder:printcolumn:name="Power",type=string,JSONPath=`.status.powerState`
// +kubebuilder:printcolumn:name="Desired",type=string,JSONPath=`.spec.powerState`
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.hostRef.name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="UUID",type=string,JSONPath=`.status.uuid`,priority=1
// +kubebuilder:printcolumn:name="Template",type=string,JSONPath=`.spec.template`,priority=1

// XenVM is a XenServer or XCP-ng virtual machine installed from a template and
// kept in the power state its spec asks for.
type XenVM struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the VM the user wants.
	// +required
	Spec XenVMSpec `json:"spec"`

	// status is what the operator last observed of the VM.
	// +optional
	Status XenVMStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// XenVMList contains a list of XenVM.
type XenVMList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []XenVM `json:"items"`
}
