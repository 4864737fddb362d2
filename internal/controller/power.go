package controller

import (
	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// nextStep is the first operation of the path from → to. Paths of more than
// one step: Halted→Suspended (start, suspend), Paused→Suspended (unpause,
// suspend), Paused→Halted in Soft mode (unpause, clean shutdown).
func nextStep(from xenapi.PowerState, to virtv1alpha1.PowerState, mode virtv1alpha1.PowerOffMode) (vmservice.PowerOp, bool) {
	if string(from) == string(to) {
		return "", false
	}
	switch from {
	case xenapi.PowerStateHalted:
		if to == virtv1alpha1.PowerStatePaused {
			return vmservice.OpStartPaused, true
		}
		return vmservice.OpStart, true // Running, or on the way to Suspended
	case xenapi.PowerStateRunning:
		switch to {
		case virtv1alpha1.PowerStatePaused:
			return vmservice.OpPause, true
		case virtv1alpha1.PowerStateSuspended:
			return vmservice.OpSuspend, true
		}
		if mode == virtv1alpha1.PowerOffHard {
			return vmservice.OpHardShutdown, true
		}
		return vmservice.OpCleanShutdown, true
	case xenapi.PowerStatePaused:
		switch {
		case to == virtv1alpha1.PowerStateRunning, to == virtv1alpha1.PowerStateSuspended:
			return vmservice.OpUnpause, true
		case mode == virtv1alpha1.PowerOffSoft:
			// A paused guest cannot shut itself down: Soft wakes it first,
			// TrySoft and Hard power it off.
			return vmservice.OpUnpause, true
		}
		return vmservice.OpHardShutdown, true
	case xenapi.PowerStateSuspended:
		switch to {
		case virtv1alpha1.PowerStateRunning:
			return vmservice.OpResume, true
		case virtv1alpha1.PowerStatePaused:
			return vmservice.OpResumePaused, true
		}
		return vmservice.OpHardShutdown, true // the only way down from Suspended
	}
	return "", false
}

// resultOf is the state a successful operation leaves the VM in.
func resultOf(op vmservice.PowerOp, current xenapi.PowerState) xenapi.PowerState {
	switch op {
	case vmservice.OpStart, vmservice.OpResume, vmservice.OpUnpause:
		return xenapi.PowerStateRunning
	case vmservice.OpStartPaused, vmservice.OpResumePaused, vmservice.OpPause:
		return xenapi.PowerStatePaused
	case vmservice.OpSuspend:
		return xenapi.PowerStateSuspended
	case vmservice.OpCleanShutdown, vmservice.OpHardShutdown:
		return xenapi.PowerStateHalted
	}
	return current
}

// desiredPower is spec.powerState with its default.
func desiredPower(obj *virtv1alpha1.XenVM) virtv1alpha1.PowerState {
	if obj.Spec.PowerState == "" {
		return virtv1alpha1.PowerStateRunning
	}
	return obj.Spec.PowerState
}

// powerOffMode is spec.powerOffMode with its default.
func powerOffMode(obj *virtv1alpha1.XenVM) virtv1alpha1.PowerOffMode {
	if obj.Spec.PowerOffMode == "" {
		return virtv1alpha1.PowerOffTrySoft
	}
	return obj.Spec.PowerOffMode
}
