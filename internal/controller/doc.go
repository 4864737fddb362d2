// Package controller holds the reconcilers of XenVM and XenHost.
//
// The RBAC markers below are the least privilege the controllers need; they are
// turned into config/rbac/role.yaml (and the Helm chart's ClusterRole) by
// `make manifests`.
//
// +kubebuilder:rbac:groups=virt.xen-operator.io,resources=xenvms;xenhosts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=virt.xen-operator.io,resources=xenvms/status;xenhosts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=virt.xen-operator.io,resources=xenvms/finalizers;xenhosts/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
package controller
