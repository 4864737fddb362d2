package main

import (
	"fmt"
	"math"
	"math/rand"
	"time"

	"github.com/xen-operator/xen-operator/internal/xapisim"
)

// The kinds of fault the suite injects.
const (
	// faultCalls fails a share of mutating calls and loses a share of their
	// answers, from the apply until the last other fault is over.
	faultCalls = "calls"
	// faultKill SIGKILLs the manager and starts it again after Param seconds.
	faultKill = "kill"
	// faultFlush destroys every session, as xapi's session GC can.
	faultFlush = "flush"
	// faultRestart restarts xapi: sessions and tasks are lost, connections
	// refused for Param seconds.
	faultRestart = "restart"
	// faultRefuse refuses connections for Param seconds.
	faultRefuse = "refuse"
)

// Fault is one fault of the schedule: when it is planned, and what the run
// saw of it.
type Fault struct {
	Kind string `json:"kind"`
	// At is the planned time, in seconds after the apply; AtConverged, the
	// share of XenVMs converged that fires it earlier, so that on a fast
	// machine it still hits the install mid-way.
	At          float64 `json:"at_s"`
	AtConverged float64 `json:"at_converged"`
	// Param is the fault's duration in seconds: the manager's time down, the
	// restart's downtime or the refusal's length.
	Param float64 `json:"param_s,omitempty"`

	// What the run saw.
	Fired       bool    `json:"fired"`
	FiredAt     float64 `json:"fired_at_s"`
	Trigger     string  `json:"trigger,omitempty"`    // "time" or "progress"
	Over        float64 `json:"over_at_s"`            // its action done: the manager back, xapi serving again
	EndedAt     float64 `json:"ended_at_s"`           // the end of its window: the next fault, or convergence
	InFlight    int     `json:"operations_in_flight"` // in xapi, when it fired
	Before      int     `json:"converged_before"`
	After       int     `json:"converged_after"`
	Logins      int64   `json:"logins_in_window"`
	Calls       int64   `json:"calls_in_window"`
	Failures    int64   `json:"failures_injected_in_window"`
	LostAnswers int     `json:"answers_lost_in_window"`
	// Resumed is the time from the fault to the next XenVM converging after
	// the fault is over; -1 when none did.
	Resumed float64 `json:"progress_resumed_after_s"`
	Note    string  `json:"note,omitempty"`

	// stats are the simulator's counters when the fault fired.
	stats xapisim.Stats
}

// What describes the fault for the report.
func (f *Fault) What(s Settings) string {
	switch f.Kind {
	case faultCalls:
		return fmt.Sprintf("%.0f%% of mutating calls fail, %.0f%% of their answers are lost", 100*s.FailureRate, 100*s.ResponseLossRate)
	case faultKill:
		return fmt.Sprintf("manager SIGKILLed, started again after %.1fs", f.Param)
	case faultFlush:
		return "every session flushed"
	case faultRestart:
		return fmt.Sprintf("xapi restarted (sessions and tasks lost), %.1fs down", f.Param)
	case faultRefuse:
		return fmt.Sprintf("connections refused for %.1fs", f.Param)
	}
	return f.Kind
}

// plan builds the seeded fault schedule for a fault window of window: the
// calls fault first (it lasts until the others are over), then kills, one
// or two flushes and one refusal in a seeded order, and xapi's restart
// last, spread over the window and over 10% to 85% of the XenVMs
// converged. The restart comes last so that every run checks that the
// running manager recovers by itself from the loss of its session and of
// the tasks under way: a kill after it would hand the recovery to a fresh
// process.
func plan(seed int64, kills int, window time.Duration) []*Fault {
	r := rand.New(rand.NewSource(seed)) //nolint:gosec // a reproducible schedule, not a secret
	between := func(lo, hi float64) float64 { return lo + r.Float64()*(hi-lo) }
	var discrete []*Fault
	for range kills {
		discrete = append(discrete, &Fault{Kind: faultKill, Param: round1(between(1, 3))})
	}
	for range 1 + r.Intn(2) {
		discrete = append(discrete, &Fault{Kind: faultFlush})
	}
	discrete = append(discrete, &Fault{Kind: faultRefuse, Param: round1(between(3, 6))})
	r.Shuffle(len(discrete), func(i, j int) { discrete[i], discrete[j] = discrete[j], discrete[i] })
	discrete = append(discrete, &Fault{Kind: faultRestart, Param: round1(between(2, 4))})

	w := window.Seconds()
	n := float64(len(discrete))
	for i, f := range discrete {
		// Slot i of n, with its point drawn within the slot's middle half.
		slot := (float64(i) + between(0.25, 0.75)) / n
		f.At = round1(w * (0.05 + 0.75*slot))
		f.AtConverged = math.Round(100*(0.10+0.75*slot)) / 100
	}
	return append([]*Fault{{Kind: faultCalls}}, discrete...)
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// closeWindow ends a fault's window at end (seconds after the apply), with
// the simulator's counters then.
func (f *Fault) closeWindow(end float64, st xapisim.Stats) {
	from, to := countersOf(f.stats), countersOf(st)
	f.EndedAt = end
	f.Logins, f.Calls, f.Failures = to.logins-from.logins, to.calls-from.calls, to.failures-from.failures
	f.LostAnswers = to.lost - from.lost
}

// fillWindows sets what the samples show of each fault: XenVMs converged at
// the end of its window, and how long until the next one converged.
func fillWindows(faults []*Fault, samples []Sample) {
	for _, f := range faults {
		if !f.Fired {
			continue
		}
		f.After = at(samples, f.EndedAt).Converged
		if f.Kind == faultCalls {
			f.Before = at(samples, 0).Converged
		}
		over := f.Over
		if f.Kind == faultCalls {
			over = f.FiredAt // the failures do not stop the install
		}
		f.Resumed = resumed(samples, f.FiredAt, over)
	}
}
