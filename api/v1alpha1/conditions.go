package v1alpha1

// Condition types.
const (
	// ConditionReady summarises: the XenHost is connected and the XenVM is
	// installed in its desired power state.
	ConditionReady = "Ready"
	// ConditionSessionHealthy tells whether the XenAPI session of a XenHost works.
	ConditionSessionHealthy = "SessionHealthy"
	// ConditionProvisioned tells whether the XenVM's VM is installed.
	ConditionProvisioned = "Provisioned"
	// ConditionPowerStateSynced tells whether the VM is in spec.powerState.
	ConditionPowerStateSynced = "PowerStateSynced"
	// ConditionRestartRequired is true while a configuration change waits for
	// the VM's next halt.
	ConditionRestartRequired = "RestartRequired"
	// ConditionHostAvailable tells whether the XenVM's XenHost can be used.
	ConditionHostAvailable = "HostAvailable"
	// ConditionNetworkSynced tells whether the VM's interfaces are those of
	// spec.networkInterfaces.
	ConditionNetworkSynced = "NetworkSynced"
	// ConditionDisksSynced tells whether the VM's disks are those of spec.disks.
	ConditionDisksSynced = "DisksSynced"
	// ConditionBootstrapReady tells whether the VM has the config drive
	// spec.cloudInit describes.
	ConditionBootstrapReady = "BootstrapReady"
)

// Condition reasons.
const (
	// ReasonConnected: the XenAPI session works.
	ReasonConnected = "Connected"
	// ReasonSecretNotFound: the credentials Secret does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonInvalidSecret: the credentials Secret lacks username or password,
	// or the CA Secret lacks its key.
	ReasonInvalidSecret = "InvalidSecret"
	// ReasonAuthenticationFailed: xapi refused the credentials.
	ReasonAuthenticationFailed = "AuthenticationFailed"
	// ReasonUnreachable: the endpoint does not answer.
	ReasonUnreachable = "Unreachable"
	// ReasonTLSError: the endpoint's certificate could not be verified.
	ReasonTLSError = "TLSError"
	// ReasonXenAPIError: xapi answered with an error.
	ReasonXenAPIError = "XenAPIError"
	// ReasonInvalidAddress: spec.address cannot be used: not a URL, carries
	// credentials, or is http:// without spec.allowInsecureHTTP.
	ReasonInvalidAddress = "InvalidAddress"
	// ReasonConnecting: the XenHost's session works but the operator has not
	// read the pool yet.
	ReasonConnecting = "Connecting"
	// ReasonInvalidSpec: the stored spec holds values the manager cannot
	// decode (written before the CRD validated them): fix the spec.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonHostNotFound: the pool has no host at the spec's address.
	ReasonHostNotFound = "HostNotFound"
	// ReasonMaintenance: the host is disabled for maintenance.
	ReasonMaintenance = "Maintenance"

	// ReasonXenHostNotFound: the XenVM's XenHost does not exist.
	ReasonXenHostNotFound = "XenHostNotFound"
	// ReasonXenHostNotReady: the XenVM's XenHost cannot be used yet.
	ReasonXenHostNotReady = "XenHostNotReady"
	// ReasonTemplateNotFound: no template has the spec's name or UUID.
	ReasonTemplateNotFound = "TemplateNotFound"
	// ReasonTemplateAmbiguous: several templates have the spec's name.
	ReasonTemplateAmbiguous = "TemplateAmbiguous"
	// ReasonProvisioning: the VM is being installed.
	ReasonProvisioning = "Provisioning"
	// ReasonProvisioned: the VM is installed.
	ReasonProvisioned = "Provisioned"
	// ReasonProvisionFailed: xapi refused to install the VM.
	ReasonProvisionFailed = "ProvisionFailed"
	// ReasonAdopted: an existing VM was adopted and is managed.
	ReasonAdopted = "Adopted"
	// ReasonObserved: an existing VM is observed; the operator changes nothing.
	ReasonObserved = "Observed"
	// ReasonVMNotFound: no VM has the UUID spec.vm names.
	ReasonVMNotFound = "VMNotFound"
	// ReasonAdoptionRefused: spec.vm names a template, a snapshot, a control
	// domain or a VM another XenVM manages.
	ReasonAdoptionRefused = "AdoptionRefused"
	// ReasonVMDeleted: the VM was destroyed outside the operator.
	ReasonVMDeleted = "VMDeleted"
	// ReasonInSync: the VM is in the desired state.
	ReasonInSync = "InSync"
	// ReasonTransitioning: the operator is moving the VM to the desired state.
	ReasonTransitioning = "Transitioning"
	// ReasonWaitingForGuest: the next step needs the guest agent.
	ReasonWaitingForGuest = "WaitingForGuest"
	// ReasonPowerOperationFailed: xapi refused a power operation; the
	// message says when it is retried.
	ReasonPowerOperationFailed = "PowerOperationFailed"
	// ReasonOperationTimedOut: an operation ran longer than
	// spec.operationTimeout; its task was cancelled.
	ReasonOperationTimedOut = "OperationTimedOut"
	// ReasonOperationLost: xapi no longer knows the operation's task (it
	// restarted, or collected the task): the VM's power state is looked at again.
	ReasonOperationLost = "OperationLost"
	// ReasonConfigurationFailed: xapi refused a configuration change; the
	// message says when it is retried.
	ReasonConfigurationFailed = "ConfigurationFailed"
	// ReasonConfigurationPending: a configuration change waits for a halt.
	ReasonConfigurationPending = "ConfigurationPending"
	// ReasonConfigurationApplied: the VM runs with its spec's configuration.
	ReasonConfigurationApplied = "ConfigurationApplied"
	// ReasonNetworkNotFound: no network of the pool has the name or UUID an
	// interface names.
	ReasonNetworkNotFound = "NetworkNotFound"
	// ReasonNetworkAmbiguous: several networks have the name an interface names.
	ReasonNetworkAmbiguous = "NetworkAmbiguous"
	// ReasonStorageNotFound: no SR has the name or UUID a disk names, or the
	// pool has no default SR for a disk that names none.
	ReasonStorageNotFound = "StorageNotFound"
	// ReasonStorageAmbiguous: several SRs have the name a disk names.
	ReasonStorageAmbiguous = "StorageAmbiguous"
	// ReasonStorageNotSuitable: the SR a disk names cannot hold VM disks
	// (an ISO library, for example).
	ReasonStorageNotSuitable = "StorageNotSuitable"
	// ReasonStorageFull: the SR has no room for the disk.
	ReasonStorageFull = "StorageFull"
	// ReasonStorageConflict: the disks' SRs cannot all be reached from one
	// host, or not from spec.affinityHost.
	ReasonStorageConflict = "StorageConflict"
	// ReasonDataSecretNotFound: a Secret spec.cloudInit names does not exist.
	ReasonDataSecretNotFound = "DataSecretNotFound"
	// ReasonDataSecretKeyNotFound: a Secret spec.cloudInit names lacks the key.
	ReasonDataSecretKeyNotFound = "DataSecretKeyNotFound"
	// ReasonDataTooLarge: the config drive's files exceed what it may hold.
	ReasonDataTooLarge = "DataTooLarge"
	// ReasonUploadFailed: writing the config drive to its VDI failed.
	ReasonUploadFailed = "UploadFailed"
	// ReasonWaitingForAddress: Ready waits for the guest to report an
	// address spec.readiness accepts.
	ReasonWaitingForAddress = "WaitingForAddress"
	// ReasonDeleting: the VM is being shut down and destroyed.
	ReasonDeleting = "Deleting"
)
