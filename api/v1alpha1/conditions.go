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
	// ConditionPlacementSynced tells whether a running VM runs on
	// spec.affinityHost (always true without one).
	ConditionPlacementSynced = "PlacementSynced"
	// ConditionRestored tells whether the revert spec.restoreFrom asks for
	// is done.
	ConditionRestored = "Restored"
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
	// ReasonMigrating: the VM is being live-migrated to spec.affinityHost.
	ReasonMigrating = "Migrating"
	// ReasonMigrationRefused: xapi refused to move the VM to
	// spec.affinityHost (VM.assert_can_boot_here or VM.pool_migrate); the
	// message says why and when it is tried again.
	ReasonMigrationRefused = "MigrationRefused"
	// ReasonAffinityHostNotFound: no host of the pool has the name or UUID
	// spec.affinityHost gives.
	ReasonAffinityHostNotFound = "AffinityHostNotFound"
	// ReasonSnapshotNotFound: the XenVMSnapshot spec.restoreFrom names does
	// not exist, belongs to another XenVM, or its snapshot is gone.
	ReasonSnapshotNotFound = "SnapshotNotFound"
	// ReasonSnapshotNotReady: the XenVMSnapshot is not taken yet.
	ReasonSnapshotNotReady = "SnapshotNotReady"
	// ReasonReverting: the VM is being reverted to a snapshot.
	ReasonReverting = "Reverting"
	// ReasonReverted: the VM was reverted to the snapshot.
	ReasonReverted = "Reverted"
	// ReasonRevertFailed: xapi refused the revert; the message says when
	// it is tried again.
	ReasonRevertFailed = "RevertFailed"
	// ReasonSnapshotTaken: the snapshot exists.
	ReasonSnapshotTaken = "SnapshotTaken"
	// ReasonSnapshotting: the snapshot is being taken.
	ReasonSnapshotting = "Snapshotting"
	// ReasonSnapshotFailed: xapi refused to take the snapshot; the message
	// says when it is tried again.
	ReasonSnapshotFailed = "SnapshotFailed"
	// ReasonSnapshotDeleted: the snapshot was destroyed outside the operator.
	ReasonSnapshotDeleted = "SnapshotDeleted"
	// ReasonXenVMNotFound: the snapshot's XenVM does not exist.
	ReasonXenVMNotFound = "XenVMNotFound"
	// ReasonVMNotInstalled: the snapshot's XenVM has no VM yet.
	ReasonVMNotInstalled = "VMNotInstalled"
	// ReasonNotRunning: a snapshot with memory needs a Running VM.
	ReasonNotRunning = "NotRunning"
	// ReasonObserveOnly: the XenVM is in Observe mode: the operator takes
	// no snapshot of its VM.
	ReasonObserveOnly = "ObserveOnly"
	// ReasonDeleting: the VM is being shut down and destroyed.
	ReasonDeleting = "Deleting"
)
