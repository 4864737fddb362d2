package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xen-operator/xen-operator/test/harness"
)

// Run is one start of the manager and how it ended.
type Run struct {
	Pid int    `json:"pid"`
	Log string `json:"log"`
	// Started and Ended are in seconds after the apply (negative: before it).
	Started float64 `json:"started_s"`
	Ended   float64 `json:"ended_s,omitempty"`
	// How is "killed" (by the suite), "stopped" (SIGTERM at the end),
	// "crashed: ..." (on its own) or "" (still running).
	How string `json:"how,omitempty"`

	start, end time.Time
}

// supervisor runs bin/manager as a Deployment would: it starts it again
// after it ends, and tells the suite's kills from crashes.
type supervisor struct {
	opts harness.ManagerOptions
	dir  string
	// rel tells a time in seconds after the apply.
	rel func(time.Time) float64

	mu   sync.Mutex
	cur  *harness.Process
	runs []*Run
	// down is set while the suite keeps the manager down on purpose.
	down bool
	done chan struct{}
	wg   sync.WaitGroup
}

func newSupervisor(opts harness.ManagerOptions, dir string, rel func(time.Time) float64) *supervisor {
	return &supervisor{opts: opts, dir: dir, rel: rel, done: make(chan struct{})}
}

// start starts the manager and watches it for crashes.
func (s *supervisor) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

func (s *supervisor) startLocked() error {
	o := s.opts
	o.LogPath = filepath.Join(s.dir, fmt.Sprintf("manager-%d.log", len(s.runs)+1))
	p, _, err := harness.StartManager(o)
	if err != nil {
		return err
	}
	s.cur = p
	s.runs = append(s.runs, &Run{Pid: p.Pid(), Log: o.LogPath, start: time.Now()})
	s.down = false
	if len(s.runs) == 1 {
		s.wg.Add(1)
		go s.watch()
	}
	return nil
}

// watch starts the manager again, after a second, if it ends on its own.
func (s *supervisor) watch() {
	defer s.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if !s.down && s.cur != nil {
			if exited, err := s.cur.Exited(); exited {
				run := s.runs[len(s.runs)-1]
				run.end = time.Now()
				run.How = fmt.Sprintf("crashed (%v): %s", err, lastLine(run.Log))
				step("The manager (pid %d) ended on its own: %v; starting it again in 1s", run.Pid, err)
				s.down = true
				s.mu.Unlock()
				time.Sleep(time.Second)
				s.mu.Lock()
				if err := s.startLocked(); err != nil {
					step("Starting the manager again failed: %v", err)
				}
			}
		}
		s.mu.Unlock()
	}
}

// kill SIGKILLs the manager, keeps it down for downFor, and starts it again.
func (s *supervisor) kill(downFor time.Duration) (string, error) {
	s.mu.Lock()
	p, run := s.cur, s.runs[len(s.runs)-1]
	s.down = true
	err := p.Kill()
	run.end = time.Now()
	run.How = "killed"
	if err != nil {
		run.How = "crashed before the kill: " + err.Error()
	}
	s.mu.Unlock()
	time.Sleep(downFor)
	if err := s.start(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("pid %d killed, pid %d started", run.Pid, s.cur.Pid()), nil
}

// stop stops the manager with SIGTERM and reports whether it stopped cleanly.
func (s *supervisor) stop(grace time.Duration) error {
	close(s.done)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	run := s.runs[len(s.runs)-1]
	err := s.cur.Stop(grace)
	run.end = time.Now()
	run.How = "stopped"
	if err != nil {
		run.How = "stop failed: " + err.Error()
	}
	return err
}

// starts is how many times the manager was started.
func (s *supervisor) starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.runs)
}

// lastStart is when the running (or last) manager was started.
func (s *supervisor) lastStart() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[len(s.runs)-1].start
}

// history returns every run so far.
func (s *supervisor) history() []Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Run, len(s.runs))
	for i, r := range s.runs {
		out[i] = *r
		out[i].Started = s.rel(r.start)
		if !r.end.IsZero() {
			out[i].Ended = s.rel(r.end)
		}
	}
	return out
}

// panics lists the logs in which a manager panicked, including panics
// controller-runtime recovered from in a reconcile.
func (s *supervisor) panics() []string {
	var out []string
	for _, r := range s.history() {
		data, err := os.ReadFile(r.Log)
		if err == nil && (strings.Contains(string(data), "panic:") || strings.Contains(string(data), "Observed a panic")) {
			out = append(out, r.Log)
		}
	}
	return out
}

func lastLine(path string) string {
	return strings.TrimSpace(harness.Tail(path, 1))
}
