package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
)

// RootDiskName names the template's bootable disk in spec.disks and status.disks.
const RootDiskName = "root"

// NetworkInterface is one of the VM's network interfaces (a XenServer VIF).
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.device) || (has(self.device) && self.device == oldSelf.device)",message="an interface's device cannot change once set: remove the interface and add another"
type NetworkInterface struct {
	// name identifies the interface in spec and status, e.g. eth0 or lan: a
	// lowercase DNS label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// network is the name_label or UUID of the pool network the interface is
	// on; a name must match exactly one network. May be changed: the
	// interface moves to the other network, live on a running VM.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Network string `json:"network"`

	// macAddress is the interface's unicast MAC address, such as
	// 02:16:3e:5a:01:02. XenServer generates one when it is absent. A change
	// replaces the interface (live where the guest supports hotplug,
	// otherwise at the next halt).
	// +optional
	// +kubebuilder:validation:MaxLength=17
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F][02468aceACE](:[0-9a-fA-F]{2}){5}$`
	MACAddress string `json:"macAddress,omitempty"`

	// device is the interface's device number, 0 to 15 (eth0 is 0). When it
	// is absent the interfaces take the lowest numbers the others leave
	// free, in list order: add new interfaces at the end, or give devices,
	// to keep the existing ones in place. Cannot change once set.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=15
	Device *int32 `json:"device,omitempty"`
}

// Disk is one of the VM's disks: the template's bootable disk (named root)
// or an extra disk the operator creates.
// +kubebuilder:validation:XValidation:rule="self.name == 'root' || has(self.size)",message="size is required for every disk but root"
// +kubebuilder:validation:XValidation:rule="self.name != 'root' || !has(self.device)",message="the root disk's device is the template's: leave device out"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.size) || (has(self.size) && quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0)",message="a disk can grow and never shrink: size cannot be lowered or removed"
// +kubebuilder:validation:XValidation:rule="has(self.storage) == has(oldSelf.storage) && (!has(self.storage) || self.storage == oldSelf.storage)",message="a disk's storage cannot change: moving a disk to another SR is not supported"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.device) || (has(self.device) && self.device == oldSelf.device)",message="a disk's device cannot change once set"
type Disk struct {
	// name identifies the disk in spec and status: root is the template's
	// bootable disk, any other lowercase DNS label an extra disk.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// size is the disk's size, a quantity string such as 20Gi or 512Mi:
	// required for extra disks; for
	// root it defaults to the template's. It can grow and never shrink. A
	// disk that cannot grow while the VM runs (most SR types) grows at the
	// VM's next halt, with RestartRequired saying so.
	// +optional
	// +kubebuilder:validation:MaxLength=24
	// +kubebuilder:validation:Pattern=`^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$`
	// +kubebuilder:validation:XValidation:rule="quantity(self).compareTo(quantity('1Mi')) >= 0 && quantity(self).compareTo(quantity('64Ti')) <= 0",message="size must be between 1Mi and 64Ti"
	Size string `json:"size,omitempty"`

	// storage is the name_label or UUID of the SR the disk is created on;
	// a name must match exactly one SR. Defaults to the pool's default SR.
	// An SR local to one host pins the VM to that host. Cannot change.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Storage string `json:"storage,omitempty"`

	// device is the extra disk's device number (xvdb is 1). Defaults to the
	// lowest number the VM has free. Cannot change once set.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=15
	Device *int32 `json:"device,omitempty"`

	// deletionPolicy is what happens to the disk's contents when the disk
	// leaves the spec or the VM is deleted: Delete destroys the disk,
	// Retain detaches it and leaves it on its SR, no longer managed. A disk
	// another VM also uses is never destroyed. Defaults to Delete.
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// SizeBytes is the disk's size in bytes, 0 when it has none (or one the
// schema would have refused).
func (d *Disk) SizeBytes() int64 {
	if d.Size == "" {
		return 0
	}
	q, err := resource.ParseQuantity(d.Size)
	if err != nil {
		return 0
	}
	return q.Value()
}

// Readiness says what Ready waits for besides the power state.
type Readiness struct {
	// waitForAddress, when true, keeps Ready false until the guest reports an
	// IP address that is not link-local (169.254.0.0/16, fe80::/10), inside
	// addressCIDR when that is set. Defaults to false.
	// +optional
	WaitForAddress bool `json:"waitForAddress,omitempty"`

	// addressCIDR limits the addresses that count, such as 10.0.0.0/8.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="addressCIDR must be a CIDR such as 10.0.0.0/8"
	AddressCIDR string `json:"addressCIDR,omitempty"`
}

// NetworkInterfaceStatus is what xapi says of one of the VM's interfaces.
type NetworkInterfaceStatus struct {
	// name of the interface in spec.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// device is the VIF's device number.
	// +optional
	Device int32 `json:"device"`
	// network is the name_label of the network the interface is on.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Network string `json:"network,omitempty"`
	// macAddress is the interface's MAC address.
	// +optional
	// +kubebuilder:validation:MaxLength=17
	MACAddress string `json:"macAddress,omitempty"`
	// attached tells whether the interface is plugged into the running VM.
	// While a power operation runs (status.operation), a change of it alone
	// is written with the operation's end, or at most every 10 seconds.
	// +optional
	Attached bool `json:"attached,omitempty"`
	// ipAddresses are the addresses the guest reports on the interface.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	IPAddresses []string `json:"ipAddresses,omitempty"`
}

// DiskStatus is what xapi says of one of the VM's disks.
type DiskStatus struct {
	// name of the disk in spec (root for the bootable disk).
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// device is the VBD's device number.
	// +optional
	Device int32 `json:"device"`
	// size is the disk's virtual size.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// storage is the name_label of the disk's SR.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	Storage string `json:"storage,omitempty"`
	// vdiUUID is the UUID of the disk's VDI.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	VDIUUID string `json:"vdiUUID,omitempty"`
	// attached tells whether the disk is plugged into the running VM.
	// While a power operation runs (status.operation), a change of it alone
	// is written with the operation's end, or at most every 10 seconds.
	// +optional
	Attached bool `json:"attached,omitempty"`
}

// VMReference names an existing XenServer VM.
type VMReference struct {
	// uuid of the VM.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	UUID string `json:"uuid"`
}

// ManagementPolicy is how far the operator manages a XenVM's VM.
// +kubebuilder:validation:Enum=Manage;Observe
type ManagementPolicy string

// The management policies.
const (
	// ManagementPolicyManage keeps the VM as the spec says.
	ManagementPolicyManage ManagementPolicy = "Manage"
	// ManagementPolicyObserve only reports what xapi says of the VM.
	ManagementPolicyObserve ManagementPolicy = "Observe"
)

// Observed tells whether the operator only observes the XenVM's VM.
func (s *XenVMSpec) Observed() bool { return s.ManagementPolicy == ManagementPolicyObserve }

// EffectiveDeletionPolicy is spec.deletionPolicy, or its default: Retain
// for an adopted VM, Delete for one the operator installed.
func (s *XenVMSpec) EffectiveDeletionPolicy() DeletionPolicy {
	switch {
	case s.DeletionPolicy != "":
		return s.DeletionPolicy
	case s.VM != nil:
		return DeletionPolicyRetain
	}
	return DeletionPolicyDelete
}
