package controller

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// reconcileConfig makes the VM's name, description, other_config,
// affinity, VCPUs and memory match the spec; it owns RestartRequired.
func (r *XenVMReconciler) reconcileConfig(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	if s.vm == nil {
		return ctrl.Result{}, nil
	}
	obj := s.obj
	cfg := vmservice.Config{NameLabel: obj.Spec.NameLabel, Description: obj.Spec.Description, OtherConfig: obj.Spec.OtherConfig,
		Protect: obj.Spec.ProtectFromDestroy, Tags: obj.Spec.Tags,
		// An installed VM has the affinity its spec says, none included; an
		// adopted one keeps its own unless the spec names a host.
		ClearAffinity: obj.Spec.AffinityHost == "" && obj.Spec.VM == nil}
	if p := obj.Spec.HARestartPriority; p != "" {
		v := haPriorities[p]
		cfg.HARestartPriority = &v
	}
	if cfg.NameLabel == "" && obj.Spec.VM == nil {
		cfg.NameLabel = obj.Name // an adopted VM keeps its name unless the spec sets one
	}
	if name := obj.Spec.AffinityHost; name != "" {
		h, ok := vmservice.HostByNameOrUUID(s.conn.Cache, name)
		if ok {
			cfg.Affinity = h
		} else {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, "AffinityHostNotFound", "Configure",
				"No host of the pool is named %q or has that UUID", name)
		}
	}
	changed, err := s.conn.Service.Configure(ctx, s.vm, s.owner, cfg)
	if err != nil {
		return r.fail(s, virtv1alpha1.ConditionRestartRequired, virtv1alpha1.ReasonConfigurationFailed, "configure", err)
	}
	if changed {
		if res, err := r.reread(s); s.done() || err != nil {
			return res, err
		}
	}
	return r.reconcileSize(ctx, s)
}

// haPriorities are xapi's values of ha_restart_priority.
var haPriorities = map[virtv1alpha1.HARestartPriority]string{
	virtv1alpha1.HARestartPriorityRestart:      "restart",
	virtv1alpha1.HARestartPriorityBestEffort:   "best-effort",
	virtv1alpha1.HARestartPriorityDoNotRestart: "",
}

// reconcileSize applies vcpus and memory, which xapi changes only on a
// halted VM: on a running one they wait for the next halt.
func (r *XenVMReconciler) reconcileSize(ctx context.Context, s *vmScope) (ctrl.Result, error) {
	vcpus, memory := desiredSize(s.obj)
	vm := s.vm
	vcpusDiffer := vcpus > 0 && (vm.VCPUsMax != vcpus || vm.VCPUsAtStartup != vcpus)
	memoryDiffers := memory > 0 && (vm.MemoryStaticMax != memory || vm.MemoryDynamicMax != memory || vm.MemoryDynamicMin != memory)
	switch {
	case !vcpusDiffer && !memoryDiffers:
	case vm.PowerState != xenapi.PowerStateHalted:
		s.pending = append(s.pending, "the new vcpus or memory")
		return ctrl.Result{}, nil
	default:
		if err := s.conn.Service.Resize(ctx, vm, vcpus, memory); err != nil {
			return r.fail(s, virtv1alpha1.ConditionRestartRequired, virtv1alpha1.ReasonConfigurationFailed, "resize", err)
		}
		if res, err := r.reread(s); s.done() || err != nil {
			return res, err
		}
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "Reconfigured", "Configure",
			"Set %d VCPUs and %d bytes of memory", s.vm.VCPUsAtStartup, s.vm.MemoryStaticMax)
	}
	return ctrl.Result{}, nil
}

// reconcileRestart says whether changes wait for the VM's next halt; it
// owns RestartRequired. The phases before it list those changes.
func (r *XenVMReconciler) reconcileRestart(_ context.Context, s *vmScope) (ctrl.Result, error) {
	if s.vm == nil {
		return ctrl.Result{}, nil
	}
	if len(s.pending) > 0 {
		s.cond(virtv1alpha1.ConditionRestartRequired, metav1.ConditionTrue, virtv1alpha1.ReasonConfigurationPending,
			"Applied at the VM's next halt: %s", strings.Join(s.pending, "; "))
		return ctrl.Result{}, nil
	}
	s.cond(virtv1alpha1.ConditionRestartRequired, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationApplied,
		"The VM runs with the spec's configuration")
	return ctrl.Result{}, nil
}

// desiredSize is the spec's vcpus and memory in XenAPI units, 0 for
// "the template's".
func desiredSize(obj *virtv1alpha1.XenVM) (vcpus, memory int64) {
	if obj.Spec.VCPUs != nil {
		vcpus = int64(*obj.Spec.VCPUs)
	}
	if obj.Spec.Memory != nil {
		memory = obj.Spec.Memory.Value()
	}
	return vcpus, memory
}
