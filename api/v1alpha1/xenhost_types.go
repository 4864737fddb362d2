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

// SecretKeyReference names a key of a Secret in the namespace of the referring object.
type SecretKeyReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key in the Secret's data. Defaults to ca.crt.
	// +optional
	// +kubebuilder:default=ca.crt
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// XenHostTLS configures how the operator verifies the host's certificate.
// +kubebuilder:validation:XValidation:rule="!(has(self.caBundle) && has(self.caSecretRef))",message="set caBundle or caSecretRef, not both"
// +kubebuilder:validation:XValidation:rule="!(self.insecureSkipVerify && (has(self.caBundle) || has(self.caSecretRef)))",message="insecureSkipVerify makes a CA pointless: set one or the other"
type XenHostTLS struct {
	// caBundle is the PEM certificate (or bundle) of the authority that signed
	// the pool's certificate, trusted besides the system's. XenServer's
	// default self-signed certificate is its own CA: put it here.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	CABundle string `json:"caBundle,omitempty"`

	// caSecretRef names a Secret key holding the CA bundle instead of caBundle.
	// +optional
	CASecretRef *SecretKeyReference `json:"caSecretRef,omitempty"`

	// insecureSkipVerify turns certificate verification off. Defaults to
	// false; use only for tests.
	// +optional
	// +kubebuilder:default=false
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// XenHostSpec describes how to reach a XenServer or XCP-ng host.
// +kubebuilder:validation:XValidation:rule="!self.address.startsWith('http://') || (has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",message="an http:// address sends the credentials and the session in clear text: use https://, or set allowInsecureHTTP: true (tests and simulators only)"
type XenHostSpec struct {
	// address is the URL of the host's XenAPI endpoint, for example
	// https://xenserver-01.example.com. For a pool, name the coordinator or
	// any member: the operator follows the pool to its coordinator. An
	// http:// address needs allowInsecureHTTP. The URL carries no
	// credentials: they come from credentialsSecretRef. May be changed; the
	// operator reconnects.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') || self.startsWith('http://')",message="address must be an http:// or https:// URL"
	// +kubebuilder:validation:XValidation:rule="isURL(self)",message="address must be a valid URL"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z]+://[^/]*@')",message="address must not carry credentials: put them in the credentials Secret"
	Address string `json:"address"`

	// allowInsecureHTTP permits an http:// address, over which the
	// credentials and the session travel unencrypted. Defaults to false: only
	// https:// addresses are used. Meant for tests and simulators.
	// +optional
	// +kubebuilder:default=false
	AllowInsecureHTTP bool `json:"allowInsecureHTTP,omitempty"`

	// credentialsSecretRef names a Secret in the same namespace holding the
	// keys `username` and `password` of a XenServer account. Rotating the
	// Secret's content logs the old session out and a new one in.
	// +required
	CredentialsSecretRef LocalSecretReference `json:"credentialsSecretRef"`

	// tls configures certificate verification for https addresses.
	// +optional
	TLS *XenHostTLS `json:"tls,omitempty"`

	// maintenance, when true, disables the host and evacuates its VMs to the
	// rest of the pool; when set back to false, the host is enabled again.
	// Defaults to false.
	// +optional
	// +kubebuilder:default=false
	Maintenance bool `json:"maintenance,omitempty"`

	// maxConcurrentOperations caps the XenAPI operations (clone, start,
	// shutdown, ...) the operator runs at once on this pool. Defaults to the
	// manager's --xenapi-max-concurrent-operations.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	MaxConcurrentOperations *int32 `json:"maxConcurrentOperations,omitempty"`

	// decodeError names the fields a stored object holds that could not be
	// decoded (see DecodeError); never serialized.
	decodeError string `json:"-"`
}

// XenHostStatus is what the operator last observed of the host.
type XenHostStatus struct {
	// uuid is the host's XenServer UUID.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UUID string `json:"uuid,omitempty"`

	// nameLabel is the host's name in XenServer.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	NameLabel string `json:"nameLabel,omitempty"`

	// hostname is the host's hostname as xapi reports it.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Hostname string `json:"hostname,omitempty"`

	// address is the host's management IP address.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Address string `json:"address,omitempty"`

	// softwareVersion is xapi's software_version map (product_version,
	// product_brand, xapi, xen, ...).
	// +optional
	SoftwareVersion map[string]string `json:"softwareVersion,omitempty"`

	// productVersion is the product version, e.g. 8.4.0.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ProductVersion string `json:"productVersion,omitempty"`

	// apiVersion is the XenAPI version, major.minor.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	APIVersion string `json:"apiVersion,omitempty"`

	// enabled tells whether the host accepts new VMs (false in maintenance).
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// poolName is the name of the host's pool.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	PoolName string `json:"poolName,omitempty"`

	// coordinator is the XenAPI URL the operator actually uses: the address,
	// or the pool coordinator it led to.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Coordinator string `json:"coordinator,omitempty"`

	// memoryTotalBytes is the host's memory.
	// +optional
	MemoryTotalBytes int64 `json:"memoryTotalBytes,omitempty"`

	// cpuCount is the host's number of logical CPUs.
	// +optional
	CPUCount int32 `json:"cpuCount,omitempty"`

	// residentVMs counts the VMs running on the host, its control domain
	// excluded. It moves with every guest started or stopped, so a change of
	// it alone is written at most every 10 seconds (as the kubelet paces a
	// node's status); a change of the host's state (conditions, enabled,
	// versions, an evacuation's start or end) is written at once, with the
	// count as it is then.
	// +optional
	ResidentVMs int32 `json:"residentVMs,omitempty"`

	// evacuation is the last evacuation spec.maintenance started: the VMs
	// it moved off the host, and whether it ended.
	// +optional
	Evacuation *Evacuation `json:"evacuation,omitempty"`

	// conditions describe the host's connection and readiness: Ready and
	// SessionHealthy.
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
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.address`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.productVersion`
// +kubebuilder:printcolumn:name="Enabled",type=boolean,JSONPath=`.status.enabled`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.address`,priority=1
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.status.poolName`,priority=1

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

// Evacuation is an evacuation of a host (host.evacuate) for maintenance.
type Evacuation struct {
	// startTime is when the operator began it.
	// +required
	StartTime metav1.Time `json:"startTime"`
	// completionTime is when it ended, successfully or not.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// taskRef is the XenAPI task running it.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	TaskRef string `json:"taskRef,omitempty"`
	// vmsAtStart counts the VMs resident on the host when it began.
	// +optional
	VMsAtStart int32 `json:"vmsAtStart,omitempty"`
	// movedVMs counts the VMs moved off the host so far: while the
	// evacuation runs, like residentVMs, refreshed at most every 10 seconds;
	// exact once completionTime is set.
	// +optional
	MovedVMs int32 `json:"movedVMs,omitempty"`
	// error is xapi's error when it failed.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Error string `json:"error,omitempty"`
}
