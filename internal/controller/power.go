package controller

import (
	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// powerStep is the next XenAPI operation on the way from one power state to
// another, and the state it leads to.
type powerStep struct {
	op     string
	result xenapi.PowerState
}

// The operations the controller drives power states with.
const (
	opStart         = "start"
	opStartPaused   = "start_paused"
	opPause         = "pause"
	opUnpause       = "unpause"
	opSuspend       = "suspend"
	opResume        = "resume"
	opResumePaused  = "resume_paused"
	opCleanShutdown = "clean_shutdown"
	opHardShutdown  = "hard_shutdown"
)

// nextStep is the first operation of the path from → to. Paths of more than
// one step: Halted→Suspended (start, suspend), Paused→Suspended (unpause,
// suspend), Paused→Halted in Soft mode (unpause, clean shutdown).
func nextStep(from xenapi.PowerState, to virtv1alpha1.PowerState, mode virtv1alpha1.PowerOffMode) (powerStep, bool) {
	const (
		halted    = xenapi.PowerStateHalted
		running   = xenapi.PowerStateRunning
		paused    = xenapi.PowerStatePaused
		suspended = xenapi.PowerStateSuspended
	)
	if string(from) == string(to) {
		return powerStep{}, false
	}
	switch from {
	case halted:
		if to == virtv1alpha1.PowerStatePaused {
			return powerStep{opStartPaused, paused}, true
		}
		return powerStep{opStart, running}, true // Running, or on the way to Suspended
	case running:
		switch to {
		case virtv1alpha1.PowerStatePaused:
			return powerStep{opPause, paused}, true
		case virtv1alpha1.PowerStateSuspended:
			return powerStep{opSuspend, suspended}, true
		default:
			if mode == virtv1alpha1.PowerOffHard {
				return powerStep{opHardShutdown, halted}, true
			}
			return powerStep{opCleanShutdown, halted}, true
		}
	case paused:
		switch to {
		case virtv1alpha1.PowerStateRunning, virtv1alpha1.PowerStateSuspended:
			return powerStep{opUnpause, running}, true
		default:
			// A paused guest cannot shut itself down: Soft wakes it first,
			// TrySoft and Hard power it off.
			if mode == virtv1alpha1.PowerOffSoft {
				return powerStep{opUnpause, running}, true
			}
			return powerStep{opHardShutdown, halted}, true
		}
	case suspended:
		switch to {
		case virtv1alpha1.PowerStateRunning:
			return powerStep{opResume, running}, true
		case virtv1alpha1.PowerStatePaused:
			return powerStep{opResumePaused, paused}, true
		default:
			return powerStep{opHardShutdown, halted}, true // the only way down from Suspended
		}
	}
	return powerStep{}, false
}
