package v1alpha1

// CloudInit is the first-boot configuration the operator gives the VM as a
// NoCloud config drive: a small ISO 9660 disk labelled cidata holding
// meta-data, user-data and, when given, network-config, attached before
// the VM's first start. cloud-init applies it at first boot only (and
// again when the drive's instance-id changes).
//
// A change is written to a new drive while the VM is Halted, with a new
// instance-id so that cloud-init applies it at the next boot; while the VM
// runs, the change waits for its next halt (RestartRequired says so).
// +kubebuilder:validation:XValidation:rule="!(has(self.userData) && has(self.userDataSecretRef))",message="set userData or userDataSecretRef, not both"
// +kubebuilder:validation:XValidation:rule="!(has(self.networkConfig) && has(self.networkConfigSecretRef))",message="set networkConfig or networkConfigSecretRef, not both"
type CloudInit struct {
	// userDataSecretRef names the key of a Secret, in the XenVM's
	// namespace, that holds the user data (#cloud-config ...). User data
	// often holds secrets: prefer this to userData.
	// +optional
	UserDataSecretRef *DataSecretKeyReference `json:"userDataSecretRef,omitempty"`

	// userData is the user data, inline, for simple cases.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	UserData string `json:"userData,omitempty"`

	// networkConfigSecretRef names the key of a Secret holding cloud-init
	// network configuration (version 1 or 2).
	// +optional
	NetworkConfigSecretRef *DataSecretKeyReference `json:"networkConfigSecretRef,omitempty"`

	// networkConfig is the network configuration, inline.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	NetworkConfig string `json:"networkConfig,omitempty"`

	// metaData entries are written into meta-data besides instance-id and
	// local-hostname, which default to the VM's UUID and the XenVM's name
	// (set them here to override).
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	MetaData map[string]string `json:"metaData,omitempty"`
}

// DataSecretKeyReference names a key of a Secret in the namespace of the
// referring object.
type DataSecretKeyReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key in the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// CloudInitStatus is the config drive the VM has.
type CloudInitStatus struct {
	// vdiUUID is the UUID of the config drive's VDI.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	VDIUUID string `json:"vdiUUID,omitempty"`

	// hash is the SHA-256 of what the drive holds (meta-data, user-data,
	// network-config), hex-encoded.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Hash string `json:"hash,omitempty"`

	// instanceID is the drive's instance-id.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	InstanceID string `json:"instanceID,omitempty"`
}
