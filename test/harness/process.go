// Package harness starts and stops the project's binaries (the XenAPI
// simulator and the manager) for the demo, the end-to-end suites, the
// benchmark and the fault-injection suite, with their output in log files,
// and holds the helpers those programs share: the objects they apply and
// waiting.
package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Process is a started binary whose output goes to a log file.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan error
	log     *os.File
}

// Start runs bin with args and env (added to this process's environment),
// its stdout and stderr appended to logPath.
func Start(name, bin string, args, env []string, logPath string) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o750); err != nil {
		return nil, err
	}
	log, err := os.Create(logPath) //nolint:gosec // a path the caller chose
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so that a terminal's Ctrl-C reaches only us and
	// we stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan error, 1), log: log}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits up to grace before killing the process.
func (p *Process) Stop(grace time.Duration) error {
	defer func() { _ = p.log.Close() }()
	if exited, err := p.Exited(); exited {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == -1 {
			return nil // ended by our signal
		}
		return err
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		if err := <-p.done; err != nil {
			return fmt.Errorf("%s did not stop within %s and was killed: %w", p.Name, grace, err)
		}
		return fmt.Errorf("%s did not stop within %s and was killed", p.Name, grace)
	}
}

// Kill sends SIGKILL, as an OOM kill or a node failure would, and waits for
// the process to end: nothing it would do on SIGTERM (logging out, releasing
// a lease) happens. It returns nil when the kill ended the process, or how it
// had ended if it was already gone.
func (p *Process) Kill() error {
	defer func() { _ = p.log.Close() }()
	if exited, err := p.Exited(); exited {
		return fmt.Errorf("%s had already exited: %w", p.Name, errOrZero(err))
	}
	_ = p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == -1 {
		return nil // ended by our signal
	}
	return fmt.Errorf("%s ended on its own before the kill: %w", p.Name, errOrZero(err))
}

func errOrZero(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

var listening = regexp.MustCompile(`^xapi-simulator listening on (\S+)$`)

// StartSimulator runs bin/xapi-simulator and waits for its "listening on"
// lines: it returns the hosts' URLs, coordinator first.
func StartSimulator(bin string, hosts int, args []string, logPath string) (*Process, []string, error) {
	p, err := Start("xapi-simulator", bin, append([]string{"--hosts", fmt.Sprint(hosts)}, args...), nil, logPath)
	if err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		urls, err := readURLs(logPath)
		if err != nil {
			return p, nil, err
		}
		if len(urls) >= hosts {
			return p, urls, nil
		}
		if exited, _ := p.Exited(); exited {
			return p, nil, fmt.Errorf("xapi-simulator exited; see %s", logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = p.Stop(5 * time.Second)
	return nil, nil, fmt.Errorf("xapi-simulator did not start within 30s; see %s", logPath)
}

func readURLs(logPath string) ([]string, error) {
	f, err := os.Open(logPath) //nolint:gosec // our own log
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var urls []string
	s := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for s.Scan() {
		if m := listening.FindStringSubmatch(s.Text()); m != nil {
			urls = append(urls, m[1])
		}
	}
	return urls, s.Err()
}

// Tail returns the last n lines of a log file.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path) //nolint:gosec // our own log
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}
