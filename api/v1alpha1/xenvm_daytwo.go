package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// HARestartPriority is what XenServer's high availability does with a VM
// when its host fails.
// +kubebuilder:validation:Enum=Restart;BestEffort;DoNotRestart
type HARestartPriority string

// The HA restart priorities.
const (
	// HARestartPriorityRestart: HA guarantees to restart the VM (xapi
	// "restart"); with HA enabled, the pool must have room for it.
	HARestartPriorityRestart HARestartPriority = "Restart"
	// HARestartPriorityBestEffort: HA restarts the VM if there is room
	// (xapi "best-effort").
	HARestartPriorityBestEffort HARestartPriority = "BestEffort"
	// HARestartPriorityDoNotRestart: HA leaves the VM off (xapi "").
	HARestartPriorityDoNotRestart HARestartPriority = "DoNotRestart"
)

// RestoreRequest asks for a revert of the VM to one of its snapshots.
type RestoreRequest struct {
	// snapshotName names a XenVMSnapshot of this XenVM, in the same
	// namespace, that is Ready.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SnapshotName string `json:"snapshotName"`
}

// RestoreStatus records the revert the operator performed (or is
// performing) for spec.restoreFrom.
type RestoreStatus struct {
	// snapshotName is the XenVMSnapshot reverted to.
	// +required
	// +kubebuilder:validation:MaxLength=253
	SnapshotName string `json:"snapshotName"`
	// snapshotUUID is the XenServer UUID of that snapshot.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	SnapshotUUID string `json:"snapshotUUID,omitempty"`
	// startTime is when the operator began the revert.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// completionTime is when the revert ended; until then the VM is not
	// started nor stopped.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// Done tells whether the revert ended.
func (r *RestoreStatus) Done() bool { return r != nil && r.CompletionTime != nil }
