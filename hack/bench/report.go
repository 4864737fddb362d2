package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// evaluate checks the targets set for N = 1000.
func evaluate(r *Result) {
	add := func(name, want, got string, met bool, why string) {
		t := Target{Name: name, Want: want, Got: got, Met: met}
		if !met {
			t.Why = why
		}
		r.Targets = append(r.Targets, t)
	}
	ratio := r.OperatorSeconds / r.BaselineSeconds
	add("Time to all Running, vs the baseline", "<= 1.25x", fmt.Sprintf("%.2fx (%.1fs vs %.1fs)", ratio, r.OperatorSeconds, r.BaselineSeconds),
		ratio <= 1.25, "the operator waits for the event stream to report each step before the next one and for status to be written")
	// The minimum for a VM with one interface and a root size: VM.clone,
	// VM.set_other_config (the tags, the disks' SR and root size),
	// VM.provision, VM.set_name_label, VIF.create, Async.VM.start and
	// task.destroy.
	add("XenAPI calls per VM, apply to Running", "<= 7", fmt.Sprintf("%.2f", r.CallsPerVMTotal), r.CallsPerVMTotal <= 7,
		"see the calls by method: retries after OTHER_OPERATION_IN_PROGRESS or extra reads")
	add("Logins (the operator's originator)", "== 1", fmt.Sprint(r.Logins), r.Logins == 1, "a session was invalidated or the credentials changed")
	add("Sessions open at once (the operator's)", "<= 1", fmt.Sprint(r.SessionsPeak), r.SessionsPeak <= 1, "more than one session per endpoint")
	add("Steady-state calls per minute (event.from excluded)", "< 10", fmt.Sprintf("%.1f", r.SteadyCallsPerMinute),
		r.SteadyCallsPerMinute < 10, "something polls xapi in the steady state; see the steady calls by method")
	add("Out-of-band correction p99 (halt to the operator starting the VM)", "< 1s", fmt.Sprintf("%.3fs", r.OutOfBandStartedP99),
		r.OutOfBandStartedP99 < 1, "the event stream or the reconcile queue is slow to react")
	add("Manager peak RSS", "< 150 MiB", fmt.Sprintf("%.1f MiB", r.PeakRSSMiB), r.PeakRSSMiB > 0 && r.PeakRSSMiB < 150,
		"the inventory and the informer caches grow with N")
	add("VMs leaked after deleting every XenVM", "== 0", fmt.Sprint(r.LeakedVMs), r.LeakedVMs == 0, "a deletion left its VM behind")
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
	svg := plot(r)
	if err := os.WriteFile(base+".svg", []byte(svg), 0o600); err != nil {
		return err
	}
	history := updateHistory(filepath.Join(outDir, "history.json"), r)
	md := markdown(r, filepath.Base(base)+".svg", history)
	if err := os.WriteFile(base+".md", []byte(md), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "report.md"), []byte(md), 0o600); err != nil {
		return err
	}
	fmt.Println()
	fmt.Print(md)
	fmt.Printf("\nReport: %s.md, %s.json, %s.svg\n", base, base, base)
	return nil
}

// scale is one N's summary in the history.
type scale struct {
	N               int     `json:"n"`
	OperatorSeconds float64 `json:"operator_seconds"`
	BaselineSeconds float64 `json:"baseline_seconds"`
	DeleteSeconds   float64 `json:"delete_seconds"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	CallsPerVM      float64 `json:"calls_per_vm"`
	Date            string  `json:"date"`
}

func updateHistory(path string, r *Result) []scale {
	var h []scale
	if data, err := os.ReadFile(path); err == nil { //nolint:gosec // our own file
		_ = json.Unmarshal(data, &h)
	}
	out := []scale{{N: r.Settings.N, OperatorSeconds: r.OperatorSeconds, BaselineSeconds: r.BaselineSeconds,
		DeleteSeconds: r.DeleteSeconds, PeakRSSMiB: r.PeakRSSMiB, CPUSeconds: r.CPUSeconds, CallsPerVM: r.CallsPerVMTotal, Date: r.Date}}
	for _, e := range h {
		if e.N != r.Settings.N {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].N < out[j].N })
	if data, err := json.MarshalIndent(out, "", "  "); err == nil {
		_ = os.WriteFile(path, data, 0o600)
	}
	return out
}

func markdown(r *Result, svg string, history []scale) string {
	var b strings.Builder
	s := r.Settings
	fmt.Fprintf(&b, "# xen-operator benchmark, N = %d\n\n", s.N)
	fmt.Fprintf(&b, "Run %s. Simulator: one host; every call %s plus up to %s of jitter; clone %s, provision %s, start %s, "+
		"shutdown %s; guest agent after %s. Concurrency: %d operations in flight (the operator's per-pool cap and the baseline's workers); "+
		"the manager runs %d reconciles at once.\n\n",
		r.Date, dur(s.CallLatencyMS), dur(s.JitterMS), dur(s.CloneMS), dur(s.ProvisionMS), dur(s.StartMS), dur(s.ShutdownMS),
		dur(s.BootDelayMS), s.Concurrency, s.Reconciles)

	b.WriteString("## Targets (set for N = 1000)\n\n| target | want | got | |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		mark := "met"
		if !t.Met {
			mark = "**missed**: " + t.Why
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, t.Want, t.Got, mark)
	}

	b.WriteString("\n## Measurements\n\n| measure | value |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("apply to all N Running and Ready (operator)", fmt.Sprintf("%.1f s", r.OperatorSeconds))
	row("same N installed and started by a plain loop (baseline)", fmt.Sprintf("%.1f s", r.BaselineSeconds))
	row("lower bound from the simulator's durations and the cap", fmt.Sprintf("%.1f s", r.LowerBoundSeconds))
	row("the apply itself (the API server admitting the N XenVMs, 16 clients, while the operator runs)", fmt.Sprintf("%.1f s", r.ApplySeconds))
	if r.ApplyAloneSeconds > 0 {
		row("the same apply on a control plane of its own, nothing else running", fmt.Sprintf("%.1f s (kube-apiserver and etcd %.1f CPU s)",
			r.ApplyAloneSeconds, r.ApplyAloneCPUSeconds))
	}
	row("kube-apiserver and etcd CPU, apply to all Running", fmt.Sprintf("%.1f s", r.ControlPlaneCPUSeconds))
	row("apply to the first XenVM Running and Ready", fmt.Sprintf("%.2f s", r.FirstRunningSeconds))
	row("operator / baseline", fmt.Sprintf("%.2f", r.OperatorSeconds/r.BaselineSeconds))
	row("operator / lower bound", fmt.Sprintf("%.2f", r.OperatorSeconds/r.LowerBoundSeconds))
	row("baseline / lower bound", fmt.Sprintf("%.2f", r.BaselineSeconds/r.LowerBoundSeconds))
	row("XenAPI calls per VM, apply to Running (event.from excluded)", fmt.Sprintf("%.2f (baseline %.2f)", r.CallsPerVMTotal, r.BaselineCallsPerVM))
	row("event.from polls per VM in that time", fmt.Sprintf("%.3f", r.EventPollsPerVM))
	row("operator logins / most sessions open at once", fmt.Sprintf("%d / %d", r.Logins, r.SessionsPeak))
	row("most operations in flight in the simulator", fmt.Sprint(r.OperationsPeakInSim))
	row("steady-state calls per minute (event.from excluded)", fmt.Sprintf("%.1f", r.SteadyCallsPerMinute))
	row("out-of-band halt to the operator starting the VM, p50 / p99", fmt.Sprintf("%.3f s / %.3f s", r.OutOfBandStartedP50, r.OutOfBandStartedP99))
	row("out-of-band halt to the VM Running again, p50 / p99", fmt.Sprintf("%.3f s / %.3f s", r.OutOfBandRunningP50, r.OutOfBandRunningP99))
	row("delete all N", fmt.Sprintf("%.1f s", r.DeleteSeconds))
	row("VMs left in the simulator", fmt.Sprint(r.LeakedVMs))
	row("manager peak RSS (up to all Running)", fmt.Sprintf("%.1f MiB (%.1f MiB)", r.PeakRSSMiB, r.PeakRSSRunningMiB))
	row("manager CPU time", fmt.Sprintf("%.1f s", r.CPUSeconds))
	row("manager CPU time from the apply to all Running, per VM", fmt.Sprintf("%.1f ms", 1000*r.ApplyCPUSeconds/float64(s.N)))
	row("requests the manager made to the API server", fmt.Sprintf("%.0f", r.APIRequests))
	row("requests the manager made to the API server from the apply to all Running, per VM", fmt.Sprintf("%.2f", r.APIRequestsPerVM))

	b.WriteString("\n### XenAPI calls per VM by method (apply to Running)\n\n| method | calls per VM |\n|---|---|\n")
	methods := make([]string, 0, len(r.CallsPerVM))
	for m := range r.CallsPerVM {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		fmt.Fprintf(&b, "| %s | %.3f |\n", m, r.CallsPerVM[m])
	}
	if len(r.APIServerRequestsPerVM) > 0 {
		b.WriteString("\n### API server requests per VM by verb and resource (apply to Running, every client)\n\n| request | per VM |\n|---|---|\n")
		for _, k := range slices.Sorted(maps.Keys(r.APIServerRequestsPerVM)) {
			fmt.Fprintf(&b, "| %s | %.3f |\n", k, r.APIServerRequestsPerVM[k])
		}
	}
	if r.CloudInitN > 0 {
		fmt.Fprintf(&b, "\n### XenVMs with a cloudInit\n\n%d more XenVMs, each with a config drive to create, write and attach, "+
			"applied after the others: Running and Ready in %.1f s; %.2f uploads (PUT /import_raw_vdi) per VM.\n\n| method | calls per VM |\n|---|---|\n",
			r.CloudInitN, r.CloudInitSeconds, r.CloudInitUploadsPerVM)
		total := 0.0
		for _, m := range slices.Sorted(maps.Keys(r.CloudInitCallsPerVM)) {
			fmt.Fprintf(&b, "| %s | %.3f |\n", m, r.CloudInitCallsPerVM[m])
			total += r.CloudInitCallsPerVM[m]
		}
		fmt.Fprintf(&b, "| all | %.2f |\n", total)
	}
	if len(r.SteadyCallsByMethod) > 0 {
		b.WriteString("\n### Steady-state calls by method\n\n| method | calls |\n|---|---|\n")
		for m, n := range r.SteadyCallsByMethod {
			fmt.Fprintf(&b, "| %s | %d |\n", m, n)
		}
	}

	b.WriteString("\n## How time and memory grow with N\n\n")
	b.WriteString("The latest run of each N (`make bench BENCH_N=...`; `make bench-scale` runs the scale mode for 1000, 4000 and 10000).\n\n")
	b.WriteString("| N | operator s | baseline s | operator/baseline | delete s | peak RSS MiB | CPU s | calls/VM | date |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, h := range history {
		fmt.Fprintf(&b, "| %d | %.1f | %.1f | %.2f | %.1f | %.1f | %.1f | %.2f | %s |\n", h.N, h.OperatorSeconds, h.BaselineSeconds,
			h.OperatorSeconds/h.BaselineSeconds, h.DeleteSeconds, h.PeakRSSMiB, h.CPUSeconds, h.CallsPerVM, h.Date)
	}
	fmt.Fprintf(&b, "\n![VMs running over time](%s)\n", svg)
	return b.String()
}

// plot draws VMs running over time for the operator and the baseline.
func plot(r *Result) string {
	const w, h, left, bottom, top, right = 720.0, 360.0, 60.0, 40.0, 30.0, 20.0
	maxT := 1.0
	for _, series := range [][]Point{r.OperatorTimeline, r.BaselineTimeline} {
		for _, p := range series {
			maxT = max(maxT, p.Seconds)
		}
	}
	maxN := float64(max(r.Settings.N, 1))
	x := func(t float64) float64 { return left + t/maxT*(w-left-right) }
	y := func(n float64) float64 { return h - bottom - n/maxN*(h-bottom-top) }
	line := func(ps []Point, color string) string {
		var pts []string
		for _, p := range ps {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.Seconds), y(float64(max(p.Running, 0)))))
		}
		return fmt.Sprintf(`<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color, strings.Join(pts, " "))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`)
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">VMs running over time, N = %d</text>`, left, r.Settings.N)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`, left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`, left, top, left, h-bottom)
	for i := 0; i <= 5; i++ {
		t := maxT * float64(i) / 5
		n := maxN * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%.0fs</text>`, x(t), h-bottom+16, t)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%.0f</text>`, left-6, y(n)+4, n)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/>`, left, y(n), w-right, y(n))
	}
	b.WriteString(line(r.BaselineTimeline, "#888"))
	b.WriteString(line(r.OperatorTimeline, "#1f77b4"))
	// The lower right stays empty: the curves rise from the lower left.
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#1f77b4">operator (%.1fs)</text>`, w-right-200, h-bottom-30, r.OperatorSeconds)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#888">baseline loop (%.1fs)</text>`, w-right-200, h-bottom-14, r.BaselineSeconds)
	b.WriteString(`</svg>`)
	return b.String()
}
