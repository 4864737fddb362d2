package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// XenVMSnapshotSpec is the snapshot a user wants of a XenVM's VM.
// +kubebuilder:validation:XValidation:rule="self.vmRef.name == oldSelf.vmRef.name",message="vmRef is immutable: take a new XenVMSnapshot of the other XenVM"
// +kubebuilder:validation:XValidation:rule="self.memory == oldSelf.memory",message="memory is immutable: it says how the snapshot was taken"
type XenVMSnapshotSpec struct {
	// vmRef names the XenVM, in the same namespace, whose VM is
	// snapshotted. The snapshot is taken once (VM.snapshot, in any power
	// state) and belongs to the XenVM: it is garbage-collected with it.
	// Immutable.
	// +required
	VMRef LocalObjectReference `json:"vmRef"`

	// memory, when true, takes a checkpoint (VM.checkpoint): the disks and
	// the memory of a running VM, so that a revert resumes it where it was.
	// Only a Running VM can be checkpointed; the snapshot waits, with a
	// condition, until it runs. Defaults to false: the disks only.
	// Immutable.
	// +optional
	// +kubebuilder:default=false
	Memory bool `json:"memory,omitempty"`

	// description is the snapshot's name_description in XenServer.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// deletionPolicy is what happens to the snapshot when this object is
	// deleted: Delete (the default) destroys it and its disks, Retain leaves
	// it in XenServer, no longer managed. When the object goes away because
	// its XenVM is deleted, the XenVM's own deletionPolicy decides instead
	// (Delete destroys every snapshot of the VM, Retain keeps them).
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// XenVMSnapshotStatus is what the operator last observed of the snapshot.
type XenVMSnapshotStatus struct {
	// uuid is the XenServer UUID of the snapshot.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UUID string `json:"uuid,omitempty"`

	// creationTime is when xapi took the snapshot (snapshot_time).
	// +optional
	CreationTime *metav1.Time `json:"creationTime,omitempty"`

	// size is the space the snapshot's disks take on their SRs
	// (physical_utilisation), as xapi reports it.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// memory tells whether the snapshot holds the VM's memory (a checkpoint).
	// +optional
	Memory bool `json:"memory,omitempty"`

	// powerState is the power state the VM was in when a snapshot with
	// memory was taken (xapi records it for checkpoints only).
	// +optional
	PowerState PowerState `json:"powerState,omitempty"`

	// conditions describe the snapshot: Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the metadata.generation this status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=xvmsnap
// +kubebuilder:printcolumn:name="XenVM",type=string,JSONPath=`.spec.vmRef.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Taken",type=date,JSONPath=`.status.creationTime`
// +kubebuilder:printcolumn:name="Size",type=string,JSONPath=`.status.size`
// +kubebuilder:printcolumn:name="Memory",type=boolean,JSONPath=`.status.memory`,priority=1
// +kubebuilder:printcolumn:name="UUID",type=string,JSONPath=`.status.uuid`,priority=1

// XenVMSnapshot is a snapshot of a XenVM's VM: its disks, and with memory
// its running state. A XenVM reverts to it when its spec.restoreFrom names
// it.
type XenVMSnapshot struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the snapshot the user wants.
	// +required
	Spec XenVMSnapshotSpec `json:"spec"`

	// status is what the operator last observed of the snapshot.
	// +optional
	Status XenVMSnapshotStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// XenVMSnapshotList contains a list of XenVMSnapshot.
type XenVMSnapshotList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []XenVMSnapshot `json:"items"`
}
