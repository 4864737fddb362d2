package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Result is one run's report.
type Result struct {
	Date     string   `json:"date"`
	Settings Settings `json:"settings"`
	Mix      string   `json:"mix"`

	ApplySeconds float64 `json:"apply_s"`
	Converged    bool    `json:"converged"`
	// ConvergedAt is when every XenVM had converged, in seconds after the
	// apply; or when the suite gave up waiting (the bound and half as long
	// again, at least a minute).
	ConvergedAt float64 `json:"converged_at_s"`
	// Stuck describes each XenVM that had not converged then.
	Stuck []string `json:"stuck,omitempty"`
	// Blockers are what else kept the run from converging: the XenHost not
	// Ready, the manager holding no session.
	Blockers []string `json:"blockers,omitempty"`
	// ScheduleNote says which faults fired after everything had converged.
	ScheduleNote string `json:"schedule_note,omitempty"`
	// PendingAtFaultsEnd describes each XenVM that had not converged when
	// the faults stopped.
	PendingAtFaultsEnd []string `json:"pending_at_faults_end,omitempty"`

	// Calls are the XenAPI calls from the apply to convergence.
	CallsTotal    int            `json:"calls_total"`
	CallsByMethod map[string]int `json:"calls_by_method"`
	// Logins are the operator's logins from the apply to convergence.
	Logins int64 `json:"logins"`
	// AnswersLost are the calls whose answer the simulator dropped, by
	// method; FailuresInjected, the calls it failed.
	AnswersLost      map[string]int `json:"answers_lost_by_method"`
	FailuresInjected int64          `json:"failures_injected"`
	SessionsCurrent  int            `json:"sessions_of_running_manager"`
	SessionsLeaked   int            `json:"sessions_of_killed_managers"`
	TasksLeft        int            `json:"tasks_left"`
	// TasksLeakedBeforeRestart are the completed tasks no XenVM followed
	// any more just before xapi's restart, which loses every task.
	TasksLeakedBeforeRestart []string `json:"tasks_leaked_before_restart"`

	DeleteSeconds   float64        `json:"delete_s"`
	DeleteCalls     map[string]int `json:"delete_calls_by_method"`
	VDIsBefore      int            `json:"vdis_before"`
	VDIsAfterDelete int            `json:"vdis_after_delete"`

	Faults  []*Fault `json:"faults"`
	Runs    []Run    `json:"manager_runs"`
	Checks  []Check  `json:"checks"`
	Samples []Sample `json:"samples"`
}

func writeReport(r *Result, outDir string) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	base := filepath.Join(outDir, fmt.Sprintf("report-%d", r.Settings.N))
	if err := os.WriteFile(base+".json", js, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(base+".md", []byte(markdown(r)), 0o600); err != nil {
		return err
	}
	fmt.Println()
	fmt.Print(summary(r))
	fmt.Printf("\nReport: %s.md and %s.json; manager logs: %s/manager-*.log\n", base, base, outDir)
	return nil
}

func (r *Result) callsPerVM() float64 {
	return float64(r.CallsTotal-r.CallsByMethod["event.from"]) / float64(r.Settings.N)
}

// summary is the short version printed at the end of a run.
func summary(r *Result) string {
	var b strings.Builder
	s := r.Settings
	verdict := "PASSED"
	if !r.Passed() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "Fault-injection suite %s: N=%d, seed %d, revision %s (replay: %s)\n", verdict, s.N, s.Seed, s.Revision, s.replay())
	conv := fmt.Sprintf("%.1fs", r.ConvergedAt)
	if !r.Converged {
		conv = fmt.Sprintf("not converged after %.1fs (%d stuck)", r.ConvergedAt, len(r.Stuck))
	}
	fmt.Fprintf(&b, "  converge: %s (bound %.0fs); delete: %.1fs (bound %.0fs)\n", conv, s.BoundSeconds, r.DeleteSeconds, s.DeleteBoundSeconds)
	fmt.Fprintf(&b, "  XenAPI calls apply to convergence: %d, %.2f per VM besides event.from; operator logins: %d\n",
		r.CallsTotal, r.callsPerVM(), r.Logins)
	for _, c := range r.Checks {
		mark := "PASS"
		if !c.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s  %s: %s\n", mark, c.Name, c.Got)
	}
	if r.ScheduleNote != "" {
		fmt.Fprintf(&b, "  NOTE  %s\n", r.ScheduleNote)
	}
	return b.String()
}

func markdown(r *Result) string {
	var b strings.Builder
	s := r.Settings
	fmt.Fprintf(&b, "# xen-operator fault-injection suite, N = %d\n\n", s.N)
	verdict := "**passed**"
	if !r.Passed() {
		verdict = "**failed**"
	}
	fmt.Fprintf(&b, "Run %s on revision `%s`, seed %d (`%s` replays the schedule): %s.\n\n",
		r.Date, s.Revision, s.Seed, s.replay(), verdict)
	fmt.Fprintf(&b, "Simulator in-process, a pool of two hosts: every call %s plus up to %s; clone %s, provision %s, other operations %s; "+
		"guest agent %s after a start. The manager (`bin/manager`, its own process): %d reconciles, %d XenAPI operations in flight. "+
		"XenVMs: %s.\n\n", dur(s.CallLatencyMS), dur(s.JitterMS), dur(s.CloneMS), dur(s.ProvisionMS), dur(s.OpMS), dur(s.BootDelayMS),
		s.Reconciles, s.Concurrency, r.Mix)
	fmt.Fprintf(&b, "Lower bound without faults %.1f s; faults spread over %.0f s after the apply; convergence bound %.0f s "+
		"(window + 2 x lower bound + 60 s); delete bound %.0f s.\n\n", s.LowerBoundSeconds, s.WindowSeconds, s.BoundSeconds, s.DeleteBoundSeconds)

	b.WriteString("## Checks\n\n| check | want | got | |\n|---|---|---|---|\n")
	for _, c := range r.Checks {
		mark := "PASS"
		if !c.Pass {
			mark = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.Name, c.Want, c.Got, mark)
	}

	if r.ScheduleNote != "" {
		fmt.Fprintf(&b, "\n**Note:** %s.\n", r.ScheduleNote)
	}

	b.WriteString("\n## Measurements\n\n| measure | value |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("apply (N creates, 16 at a time)", fmt.Sprintf("%.1f s", r.ApplySeconds))
	if r.Converged {
		row("apply to every XenVM converged", fmt.Sprintf("%.1f s", r.ConvergedAt))
	} else {
		row("apply to every XenVM converged", fmt.Sprintf("not converged; gave up at %.1f s with %d stuck", r.ConvergedAt, len(r.Stuck)))
	}
	row("XenAPI calls, apply to convergence", fmt.Sprint(r.CallsTotal))
	row("calls per VM (event.from excluded)", fmt.Sprintf("%.2f", r.callsPerVM()))
	row("mutating calls failed by the simulator", fmt.Sprint(r.FailuresInjected))
	lost := []string{}
	for _, m := range sortedKeys(r.AnswersLost) {
		lost = append(lost, fmt.Sprintf("%s %d", m, r.AnswersLost[m]))
	}
	row("answers lost (the call ran)", strings.Join(lost, ", "))
	row("operator logins, apply to convergence", fmt.Sprint(r.Logins))
	row("operator sessions open at convergence", fmt.Sprintf("%d of the running manager, %d of killed ones", r.SessionsCurrent, r.SessionsLeaked))
	row("tasks left undestroyed just before xapi's restart / at convergence", fmt.Sprintf("%d / %d", len(r.TasksLeakedBeforeRestart), r.TasksLeft))
	row("delete all N", fmt.Sprintf("%.1f s", r.DeleteSeconds))
	row("VDIs before the run / after the delete", fmt.Sprintf("%d / %d", r.VDIsBefore, r.VDIsAfterDelete))

	b.WriteString("\n## Faults\n\nEach fault's window runs from it to the next fault (the last one's, to convergence). " +
		"Over: when its action was done (the manager running again, xapi serving again). " +
		"Converged: XenVMs Ready in their power state with the simulator agreeing. " +
		"Resumed: time from the fault to the next XenVM converging once it was over.\n\n")
	b.WriteString("| fault | planned | fired | over | converged before / after | window | logins | calls | failed | answers lost | resumed after | note |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range r.Faults {
		planned := fmt.Sprintf("%.1f s or %.0f%% converged", f.At, 100*f.AtConverged)
		if f.Kind == faultCalls {
			planned = "at the apply"
		}
		fired, res := "no", "-"
		if f.Fired {
			fired = fmt.Sprintf("%.1f s (%s)", f.FiredAt, f.Trigger)
			if f.Kind != faultCalls && f.Kind != faultFlush {
				fired += fmt.Sprintf(", %d operations in flight", f.InFlight)
			}
		}
		switch {
		case f.Resumed >= 0:
			res = fmt.Sprintf("%.1f s", f.Resumed)
		case f.Before >= s.N:
			res = "all converged"
		case f.Fired:
			res = "never"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.1f s | %d / %d | %.1f-%.1f s | %d | %d | %d | %d | %s | %s |\n", f.What(s), planned, fired,
			f.Over, f.Before, f.After, f.FiredAt, f.EndedAt, f.Logins, f.Calls, f.Failures, f.LostAnswers, res, f.Note)
	}

	b.WriteString("\n## Manager runs\n\n| pid | started | ended | how | log |\n|---|---|---|---|---|\n")
	for _, run := range r.Runs {
		fmt.Fprintf(&b, "| %d | %.1f s | %.1f s | %s | `%s` |\n", run.Pid, run.Started, run.Ended, run.How, run.Log)
	}

	b.WriteString("\n## XenAPI calls by method, apply to convergence\n\n| method | calls | per VM |\n|---|---|---|\n")
	for _, m := range sortedKeys(r.CallsByMethod) {
		fmt.Fprintf(&b, "| %s | %d | %.2f |\n", m, r.CallsByMethod[m], float64(r.CallsByMethod[m])/float64(s.N))
	}
	b.WriteString("\n## XenAPI calls by method, delete\n\n| method | calls |\n|---|---|\n")
	for _, m := range sortedKeys(r.DeleteCalls) {
		fmt.Fprintf(&b, "| %s | %d |\n", m, r.DeleteCalls[m])
	}

	b.WriteString("\n## Converged over time\n\n| s | converged | Ready | operator logins | calls |\n|---|---|---|---|---|\n")
	lastT := -100.0
	for i, smp := range r.Samples {
		if smp.T-lastT >= 5 || i == len(r.Samples)-1 {
			fmt.Fprintf(&b, "| %.1f | %d | %d | %d | %d |\n", smp.T, smp.Converged, smp.Ready, smp.Logins, smp.Calls)
			lastT = smp.T
		}
	}

	if len(r.PendingAtFaultsEnd) > 0 {
		fmt.Fprintf(&b, "\n## Not converged when the faults stopped (%d)\n\n", len(r.PendingAtFaultsEnd))
		for _, line := range r.PendingAtFaultsEnd {
			fmt.Fprintf(&b, "- %s\n", line)
		}
	}

	for _, c := range r.Checks {
		if !c.Pass && c.Detail != "" {
			fmt.Fprintf(&b, "\n## Failed: %s\n\n", c.Name)
			for _, line := range strings.Split(c.Detail, "\n") {
				fmt.Fprintf(&b, "- %s\n", line)
			}
		}
	}
	return b.String()
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
