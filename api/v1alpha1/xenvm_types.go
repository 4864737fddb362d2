package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
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

// PowerOffMode is how the operator powers a VM off.
// +kubebuilder:validation:Enum=Soft;Hard;TrySoft
type PowerOffMode string

// The power-off modes.
const (
	// PowerOffSoft asks the guest to shut down and waits.
	PowerOffSoft PowerOffMode = "Soft"
	// PowerOffHard powers the VM off at once.
	PowerOffHard PowerOffMode = "Hard"
	// PowerOffTrySoft asks the guest, then powers off after softShutdownTimeout,
	// or at once when the guest cannot be asked.
	PowerOffTrySoft PowerOffMode = "TrySoft"
)

// DeletionPolicy is what happens to the VM when its XenVM is deleted.
// +kubebuilder:validation:Enum=Delete;Retain
type DeletionPolicy string

// The deletion policies.
const (
	// DeletionPolicyDelete shuts the VM down and destroys it with its disks.
	DeletionPolicyDelete DeletionPolicy = "Delete"
	// DeletionPolicyRetain leaves the VM as it is, no longer managed.
	DeletionPolicyRetain DeletionPolicy = "Retain"
)

// Phase is a one-word summary of a XenVM, for people.
type Phase string

// The phases.
const (
	PhasePending      Phase = "Pending"
	PhaseProvisioning Phase = "Provisioning"
	PhaseStarting     Phase = "Starting"
	PhaseRunning      Phase = "Running"
	PhaseStopping     Phase = "Stopping"
	PhaseHalted       Phase = "Halted"
	PhaseSuspending   Phase = "Suspending"
	PhaseSuspended    Phase = "Suspended"
	PhasePaused       Phase = "Paused"
	PhaseDeleting     Phase = "Deleting"
	PhaseFailed       Phase = "Failed"
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
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.template) || (has(self.template) && self.template == oldSelf.template)",message="template is immutable: delete and recreate the XenVM to install from another template"
// +kubebuilder:validation:XValidation:rule="has(self.template) != has(self.vm)",message="set template to install a VM or vm to adopt one, exactly one of them"
// +kubebuilder:validation:XValidation:rule="has(self.vm) == has(oldSelf.vm) && (!has(self.vm) || self.vm.uuid == oldSelf.vm.uuid)",message="vm is immutable: delete and recreate the XenVM to adopt another VM"
// +kubebuilder:validation:XValidation:rule="!has(self.vm) || !self.recreateIfMissing",message="recreateIfMissing needs a template: an adopted VM cannot be installed again"
// +kubebuilder:validation:XValidation:rule="self.hostRef.name == oldSelf.hostRef.name",message="hostRef is immutable: a VM cannot move to another XenHost"
type XenVMSpec struct {
	// hostRef names the XenHost, in the same namespace, whose pool runs the
	// VM. Immutable.
	// +required
	HostRef LocalObjectReference `json:"hostRef"`

	// template is the name_label or UUID of the XenServer template the VM is
	// installed from. A name must match exactly one template. Immutable. Set
	// template to install a new VM, or vm to adopt an existing one.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Template string `json:"template,omitempty"`

	// vm names an existing VM to adopt instead of installing one: it is
	// tagged with this object (in Manage mode) and kept as the spec says
	// from then on. Templates, snapshots, control domains and VMs another
	// XenVM manages are refused. Immutable.
	// +optional
	VM *VMReference `json:"vm,omitempty"`

	// managementPolicy is Manage (the default: the operator changes the VM
	// to match the spec) or Observe (it only reports what xapi says: power
	// state, host, addresses, disks and interfaces; it never changes,
	// starts, stops or destroys the VM, and deleting the XenVM leaves the VM
	// untouched).
	// +optional
	// +kubebuilder:default=Manage
	ManagementPolicy ManagementPolicy `json:"managementPolicy,omitempty"`

	// nameLabel is the VM's name in XenServer. Defaults to the object's name;
	// may be changed.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	NameLabel string `json:"nameLabel,omitempty"`

	// description is the VM's name_description in XenServer.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// powerState is the power state the operator keeps the VM in: Running,
	// Halted, Suspended or Paused. Defaults to Running; may be changed at any time.
	// +optional
	// +kubebuilder:default=Running
	PowerState PowerState `json:"powerState,omitempty"`

	// vcpus is the number of virtual CPUs. Defaults to the template's. A change
	// applies at the next halt (RestartRequired says when one is pending).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	VCPUs *int32 `json:"vcpus,omitempty"`

	// memory is the VM's memory, e.g. 2Gi. Defaults to the template's. A
	// change applies at the next halt.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Mi')) >= 0",message="memory must be at least 64Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('6Ti')) <= 0",message="memory must be at most 6Ti"
	Memory *resource.Quantity `json:"memory,omitempty"`

	// powerOffMode is how the VM is powered off: Soft asks the guest and
	// waits, Hard powers off at once, TrySoft asks the guest and powers off
	// after softShutdownTimeout or at once when the guest has no agent.
	// Defaults to TrySoft.
	// +optional
	// +kubebuilder:default=TrySoft
	PowerOffMode PowerOffMode `json:"powerOffMode,omitempty"`

	// softShutdownTimeout is how long a soft shutdown may take before
	// TrySoft powers the VM off, a duration such as 90s or 5m between 1s and
	// 24h. Defaults to 2m; may be changed at any time.
	// +optional
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="softShutdownTimeout must be between 1s and 24h"
	SoftShutdownTimeout *metav1.Duration `json:"softShutdownTimeout,omitempty"`

	// operationTimeout is how long one XenAPI operation on the VM (start,
	// shutdown, suspend, resume, pause, unpause) may run before the operator
	// gives up on it: it cancels the operation's task, reports
	// OperationTimedOut and looks at the VM's power state again. A duration
	// between 10s and 24h. Defaults to 10m; may be changed at any time.
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('24h')",message="operationTimeout must be between 10s and 24h"
	OperationTimeout *metav1.Duration `json:"operationTimeout,omitempty"`

	// deletionPolicy is what happens to the VM when the XenVM is deleted:
	// Delete shuts it down and destroys it with its disks and all its
	// snapshots (those other tools took included; its XenVMSnapshots are
	// garbage-collected), Retain leaves it, and its snapshots, as they are,
	// no longer managed. Defaults to Delete for a VM the operator installed
	// and to Retain for an adopted one.
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// affinityHost is the name_label or UUID of the host of the pool the VM
	// runs on: it starts there, and a running VM elsewhere is live-migrated
	// there (VM.pool_migrate, after VM.assert_can_boot_here; a refusal, such
	// as a disk on another host's local SR or too little free memory, is
	// reported in PlacementSynced and tried again after a growing wait). A
	// halted VM only gets the new affinity. Removing it clears the VM's
	// affinity and migrates nothing (an adopted VM keeps its own affinity
	// unless the spec names a host).
	// +optional
	// +kubebuilder:validation:MaxLength=255
	AffinityHost string `json:"affinityHost,omitempty"`

	// otherConfig entries are set in the VM's other_config. Keys under
	// xen-operator.io/ are reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('xen-operator.io/'))",message="otherConfig keys under xen-operator.io/ are reserved for the operator"
	OtherConfig map[string]string `json:"otherConfig,omitempty"`

	// protectFromDestroy, when true, blocks VM.destroy on the VM
	// (blocked_operations) so that other tools are refused with
	// OPERATION_BLOCKED; the operator lifts the block itself before it
	// destroys the VM for deletionPolicy Delete.
	// +optional
	ProtectFromDestroy bool `json:"protectFromDestroy,omitempty"`

	// tags are the VM's XenServer tags (as XenCenter and Xen Orchestra show
	// them). When set, the VM has exactly these; when absent, its tags are
	// left alone.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:MinLength=1
	Tags []string `json:"tags,omitempty"`

	// haRestartPriority is what the pool's high availability does with the
	// VM when its host fails: Restart (guaranteed, xapi "restart"),
	// BestEffort (if there is room) or DoNotRestart. When absent the VM's
	// value is left alone. xapi refuses Restart for a VM the HA plan cannot
	// protect (the condition says so).
	// +optional
	HARestartPriority HARestartPriority `json:"haRestartPriority,omitempty"`

	// restoreFrom reverts the VM to a XenVMSnapshot of this XenVM, once
	// (VM.revert): the VM's disks (and memory, for a snapshot taken with
	// memory) go back to the snapshot's, then the operator drives the VM to
	// powerState again. status.restoredFrom records the revert; to revert to
	// the same snapshot again, remove restoreFrom and set it again. Setting
	// it to another snapshot reverts to that one.
	// +optional
	RestoreFrom *RestoreRequest `json:"restoreFrom,omitempty"`

	// recreateIfMissing, when true, installs the VM again if it is destroyed
	// behind the operator's back. Defaults to false: a destroyed VM is
	// reported Failed.
	// +optional
	// +kubebuilder:default=false
	RecreateIfMissing bool `json:"recreateIfMissing,omitempty"`

	// networkInterfaces are the VM's network interfaces. When the list is
	// set the VM has exactly these (interfaces it has beyond them are
	// removed); when it is absent the operator leaves the VM's interfaces
	// alone (stock templates have none). Adding, removing or moving an
	// interface to another network happens live on a running VM where the
	// guest supports hotplug, otherwise at the next halt (RestartRequired).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(a, !has(a.device) || self.filter(b, has(b.device) && b.device == a.device).size() == 1)",message="two interfaces have the same device"
	// +kubebuilder:validation:XValidation:rule="self.all(a, !has(a.macAddress) || self.filter(b, has(b.macAddress) && b.macAddress.lowerAscii() == a.macAddress.lowerAscii()).size() == 1)",message="two interfaces have the same macAddress"
	NetworkInterfaces []NetworkInterface `json:"networkInterfaces,omitempty"`

	// disks are the VM's disks: root (the template's bootable disk: its
	// size and storage apply at install, a larger size later grows it) and
	// extra disks, created empty and attached. Removing an extra disk from
	// the list detaches it; its deletionPolicy says whether it is destroyed.
	// Disks the template brings besides root, and disks attached outside
	// the operator, are left alone.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(a, !has(a.device) || self.filter(b, has(b.device) && b.device == a.device).size() == 1)",message="two disks have the same device"
	Disks []Disk `json:"disks,omitempty"`

	// readiness says what Ready waits for besides the power state, such as
	// an IP address.
	// +optional
	Readiness *Readiness `json:"readiness,omitempty"`

	// cloudInit is the first-boot configuration (SSH keys, hostname, users,
	// packages, network) given to the VM as a NoCloud config drive.
	// cloud-init applies it at first boot only: a change is written to a
	// new drive, with a new instance-id, while the VM is Halted, and waits
	// for the next halt while it runs.
	// +optional
	CloudInit *CloudInit `json:"cloudInit,omitempty"`

	// decodeError names the fields a stored object holds that could not be
	// decoded (see DecodeError); never serialized.
	decodeError string `json:"-"`
}

// Operation is a XenAPI operation the operator has in flight.
type Operation struct {
	// name of the operation, e.g. start or clean_shutdown.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Name string `json:"name"`

	// startTime is when the operator started it.
	// +required
	StartTime metav1.Time `json:"startTime"`

	// taskRef is the XenAPI task running the operation.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	TaskRef string `json:"taskRef,omitempty"`

	// progress of the task, in percent. A change of it alone is written at
	// most every 10 seconds; the operation's start and end are written at
	// once.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Progress int32 `json:"progress,omitempty"`
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

	// phase is a one-word summary: Pending, Provisioning, Starting, Running,
	// Stopping, Halted, Suspending, Suspended, Paused, Deleting or Failed.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Phase Phase `json:"phase,omitempty"`

	// residentOn is the name of the host the VM runs on.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	ResidentOn string `json:"residentOn,omitempty"`

	// ipAddresses are the addresses the guest agent reports, IPv4 first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	IPAddresses []string `json:"ipAddresses,omitempty"`

	// networkInterfaces are the VM's interfaces that spec.networkInterfaces
	// names, as xapi reports them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	NetworkInterfaces []NetworkInterfaceStatus `json:"networkInterfaces,omitempty"`

	// disks are the VM's root disk and the disks spec.disks names, as xapi
	// reports them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=17
	Disks []DiskStatus `json:"disks,omitempty"`

	// cloudInit is the config drive the VM has, once written.
	// +optional
	CloudInit *CloudInitStatus `json:"cloudInit,omitempty"`

	// restoredFrom is the revert spec.restoreFrom asked for, once begun.
	// +optional
	RestoredFrom *RestoreStatus `json:"restoredFrom,omitempty"`

	// operation is the XenAPI operation in flight, if any.
	// +optional
	Operation *Operation `json:"operation,omitempty"`

	// conditions describe the VM: Ready, Provisioned, PowerStateSynced,
	// RestartRequired, HostAvailable, NetworkSynced, DisksSynced,
	// BootstrapReady, PlacementSynced and Restored.
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
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Power",type=string,JSONPath=`.status.powerState`
// +kubebuilder:printcolumn:name="Desired",type=string,JSONPath=`.spec.powerState`
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.status.residentOn`
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=`.status.ipAddresses[0]`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="UUID",type=string,JSONPath=`.status.uuid`,priority=1
// +kubebuilder:printcolumn:name="Template",type=string,JSONPath=`.spec.template`,priority=1
// +kubebuilder:printcolumn:name="XenHost",type=string,JSONPath=`.spec.hostRef.name`,priority=1

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
