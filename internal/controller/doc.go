// Package controller holds the reconcilers of XenVM and XenHost.
//
// Both follow one skeleton (common.go, after Cluster API's machine
// controller): get the object, put the finalizer on before anything is
// created, defer one status patch that also writes the summary condition
// Ready and, when the reconcile succeeded, observedGeneration, then run an
// ordered list of phases with one signature whose results are merged in one
// place. Each XenVM phase owns one condition and lives in its own file:
// xenvm_install.go (Provisioned), xenvm_config.go (RestartRequired, from
// what every phase says waits for a halt), xenvm_network.go
// (NetworkSynced), xenvm_disks.go and xenvm_storage.go (DisksSynced),
// xenvm_bootstrap.go (BootstrapReady: the cloud-init config drive),
// xenvm_power.go (PowerStateSynced), xenvm_delete.go, xenvm_status.go
// (Ready, the phase, what xapi reports). The XenHost controller owns the
// connection to each pool (connections.go); the XenVM controller only looks
// connections up. The reconcilers read the pools through their caches
// (internal/xenapi/cache) and change them through internal/vmservice: no
// XenAPI method name, OpaqueRef or other_config syntax appears here, and no
// reconcile waits for a pool. Failed XenAPI calls back off per object.
//
// The RBAC markers below are the least privilege the controllers need; they are
// turned into config/rbac/role.yaml (and the Helm chart's ClusterRole) by
// `make manifests`.
//
// +kubebuilder:rbac:groups=virt.xen-operator.io,resources=xenvms;xenhosts;xenvmsnapshots,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=virt.xen-operator.io,resources=xenvms/status;xenhosts/status;xenvmsnapshots/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=virt.xen-operator.io,resources=xenvms/finalizers;xenhosts/finalizers;xenvmsnapshots/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
package controller
