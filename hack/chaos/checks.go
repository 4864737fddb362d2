package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/xen-operator/xen-operator/internal/xapisim"
)

// Check is one assertion and what the run showed.
type Check struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail,omitempty"`
}

// add records a check and prints it.
func (r *Result) add(name, want, got string, pass bool, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, Want: want, Got: got, Pass: pass, Detail: detail})
	mark := "PASS"
	if !pass {
		mark = "FAIL"
	}
	step("%s  %s: %s (want %s)", mark, name, got, want)
	if !pass && detail != "" {
		step("      %s", clip(detail, 2000))
	}
}

// Passed tells whether every check passed.
func (r *Result) Passed() bool {
	for _, c := range r.Checks {
		if !c.Pass {
			return false
		}
	}
	return len(r.Checks) > 0
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf(" ... (%d more characters in the report)", len(s)-n)
}

// check asserts convergence, one VM per XenVM, no orphans, the tasks, one
// session and bounded logins, on the pool as it is after convergence.
func check(s Settings, res *Result, snap xapisim.Snapshot, uids map[string]string, preVDIs map[string]bool,
	st xapisim.Stats, sup *supervisor) {
	// The schedule tests the install only where it hit it mid-way: say so
	// when it did not (it is no assertion on the operator).
	var late []string
	for _, f := range res.Faults[1:] {
		if !f.Fired || f.Before >= s.N {
			late = append(late, fmt.Sprintf("%s at %.1fs", f.Kind, f.FiredAt))
		}
	}
	if len(late) > 0 {
		res.ScheduleNote = fmt.Sprintf("%d of %d faults fired after every XenVM had converged (%s): they tested the steady state, not the install; "+
			"a larger N or a lower -concurrency makes the install last longer", len(late), len(res.Faults)-1, strings.Join(late, ", "))
		step("NOTE  %s", res.ScheduleNote)
	}

	got := fmt.Sprintf("%d/%d converged at %.1fs", s.N-len(res.Stuck), s.N, res.ConvergedAt)
	if len(res.Blockers) > 0 {
		got += "; " + strings.Join(res.Blockers, "; ")
	}
	res.add("converged within the bound", fmt.Sprintf("all %d Ready in their power state, the simulator agreeing, the XenHost Ready, "+
		"the manager connected, <= %.0fs after the apply", s.N, s.BoundSeconds), got, res.Converged && res.ConvergedAt <= s.BoundSeconds, strings.Join(append(res.Blockers, res.Stuck...), "\n"))

	view := viewOf(snap, uids)
	var none, dups, tmpls []string
	for uid, name := range uids {
		vms, ts := view.vms[uid], view.templates[uid]
		switch {
		case len(vms) == 0:
			none = append(none, name)
		case len(vms) > 1:
			dups = append(dups, fmt.Sprintf("%s: %s", name, describe(vms)))
		}
		if len(ts) > 0 {
			tmpls = append(tmpls, fmt.Sprintf("%s: %s", name, describe(ts)))
		}
	}
	sort.Strings(none)
	sort.Strings(dups)
	sort.Strings(tmpls)
	detail := strings.Join(append(append(prefixed("no VM: ", none), prefixed("several VMs: ", dups)...),
		prefixed("install templates left: ", tmpls)...), "\n")
	res.add("exactly one VM per XenVM", "1 VM (tagged or install-named) and 0 install templates per XenVM",
		fmt.Sprintf("%d with one, %d with none, %d with several, %d with install templates left",
			len(uids)-len(none)-len(dups), len(none), len(dups), len(tmpls)),
		len(none) == 0 && len(dups) == 0 && len(tmpls) == 0, detail)

	res.add("no orphan VMs", "0 VMs or install templates that belong to no XenVM", fmt.Sprint(len(view.orphans)),
		len(view.orphans) == 0, describe(view.orphans))

	used := map[string]bool{}
	for _, vm := range snap.VMs {
		if vm.SuspendVDI != "" {
			used[vm.SuspendVDI] = true
		}
	}
	var orphanVDIs []string
	for _, v := range snap.VDIs {
		if len(v.VBDs) == 0 && !used[v.Ref] && !preVDIs[v.Ref] {
			orphanVDIs = append(orphanVDIs, fmt.Sprintf("%s %q (%s)", v.UUID, v.NameLabel, v.Type))
		}
	}
	res.add("no orphan VDIs", "0 new VDIs that no VBD uses and that are no suspend image", fmt.Sprint(len(orphanVDIs)),
		len(orphanVDIs) == 0, strings.Join(orphanVDIs, "; "))

	pending, done := map[string]int{}, map[string]int{}
	npending, ndone := 0, 0
	for _, t := range snap.Tasks {
		if t.Status == "pending" {
			pending[t.NameLabel]++
			npending++
		} else {
			done[t.NameLabel+" "+t.Status]++
			ndone++
		}
	}
	res.add("no pending tasks", "0", fmt.Sprint(npending), npending == 0, counts(pending))
	// Tasks left: at convergence, and just before xapi's restart lost every
	// task (the completed ones no XenVM followed any more).
	c := countersOf(st)
	allowance := 5 + c.lostAsync
	res.TasksLeft = ndone
	for _, t := range res.TasksLeakedBeforeRestart {
		done["before the restart: "+t]++
	}
	left := ndone + len(res.TasksLeakedBeforeRestart)
	res.add("tasks left undestroyed", fmt.Sprintf("<= %d (5, plus %d Async calls whose answer, the task's reference, was lost)",
		allowance, c.lostAsync), fmt.Sprintf("%d (%d just before xapi's restart, %d at convergence)", left, len(res.TasksLeakedBeforeRestart), ndone),
		left <= allowance, counts(done))

	// Sessions: the running manager's, and those of killed managers, which
	// could not log out (xapi's GC collects them).
	lastStart := sup.lastStart()
	current, leaked := 0, 0
	var sessions []string
	for _, sess := range snap.Sessions {
		if !strings.HasPrefix(sess.Originator, operatorOriginator) {
			continue
		}
		if sess.LoggedIn.Before(lastStart) {
			leaked++
		} else {
			current++
		}
		sessions = append(sessions, fmt.Sprintf("%s logged in at %.1fs", sess.Originator, sup.rel(sess.LoggedIn)))
	}
	killed := sup.starts() - 1
	res.SessionsCurrent, res.SessionsLeaked = current, leaked
	res.add("one session", fmt.Sprintf("1 for the running manager (and <= %d left by the %d killed ones, which cannot log out)", killed, killed),
		fmt.Sprintf("%d (and %d from killed managers)", current, leaked), current == 1 && leaked <= killed,
		fmt.Sprintf("the running manager started at %.1fs; sessions: %s", sup.rel(lastStart), strings.Join(sessions, "; ")))

	flushes, restarts := 0, 0
	for _, f := range res.Faults {
		switch f.Kind {
		case faultFlush:
			flushes++
		case faultRestart:
			restarts++
		}
	}
	limit := int64(sup.starts() + flushes + restarts + 2)
	res.add("bounded logins", fmt.Sprintf("<= %d (%d manager starts + %d flushes + %d restarts + 2)", limit, sup.starts(), flushes, restarts),
		fmt.Sprint(c.logins), c.logins <= limit, "")
}

// checkShutdown asserts that the manager never ended on its own and that,
// stopped with SIGTERM, it ended cleanly and logged its session out.
func checkShutdown(res *Result, sim *xapisim.Server, sup *supervisor, stopErr error) {
	var crashes []string
	for _, r := range sup.history() {
		if strings.HasPrefix(r.How, "crashed") {
			crashes = append(crashes, fmt.Sprintf("pid %d at %.1fs (log %s): %s", r.Pid, r.Ended, r.Log, r.How))
		}
	}
	for _, log := range sup.panics() {
		crashes = append(crashes, "a panic in "+log)
	}
	res.add("the manager never crashed (only the suite's kills)", "0 crashes or panics", fmt.Sprint(len(crashes)),
		len(crashes) == 0, strings.Join(crashes, "; "))

	open := sessionsSince(sim, sup.lastStart())
	why := ""
	if stopErr != nil {
		why = stopErr.Error()
	}
	res.add("a stopped manager ends cleanly and logs out", "exit 0 within 30s, 0 sessions of it left",
		fmt.Sprintf("stop: %s, %d sessions left", errText(stopErr), open), stopErr == nil && open == 0, why)
}

func errText(err error) string {
	if err == nil {
		return "clean"
	}
	return err.Error()
}

func describe(vms []xapisim.SnapshotVM) string {
	parts := make([]string, len(vms))
	for i, vm := range vms {
		kind := "VM"
		if vm.IsTemplate {
			kind = "template"
		}
		parts[i] = fmt.Sprintf("%s %s %q %s owner %q", kind, vm.UUID, vm.NameLabel, vm.PowerState, ownerOf(vm))
	}
	return strings.Join(parts, "; ")
}

func prefixed(p string, items []string) []string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = p + s
	}
	return out
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// checkDevices asserts that every XenVM that declares an interface and a
// data disk has exactly one of each, and the others none.
func checkDevices(res *Result, snap xapisim.Snapshot, uids map[string]string, withDevices map[string]bool) {
	view := viewOf(snap, uids)
	disks := map[string]int{}
	for _, v := range snap.VDIs {
		if uid := v.OtherConfig["xen-operator.io/uid"]; uid != "" && v.OtherConfig["xen-operator.io/disk"] == chaosDisk {
			disks[uid]++
		}
	}
	var wrong []string
	for uid, name := range uids {
		want := 0
		if withDevices[uid] {
			want = 1
		}
		vifs := 0
		for _, vm := range view.vms[uid] {
			vifs += len(vm.VIFs)
		}
		if vifs != want || disks[uid] != want {
			wrong = append(wrong, fmt.Sprintf("%s: %d interfaces, %d data disks (want %d)", name, vifs, disks[uid], want))
		}
	}
	sort.Strings(wrong)
	res.add("devices exactly once", "1 interface and 1 data disk per XenVM that declares them, none for the others",
		fmt.Sprintf("%d XenVMs wrong", len(wrong)), len(wrong) == 0, strings.Join(wrong, "\n"))
}
