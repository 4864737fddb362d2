// Command xapi-simulator serves a simulated XenServer pool over XenAPI
// (XML-RPC and JSON-RPC) for tests, the demo and the benchmarks. It prints one
// line "xapi-simulator listening on URL" per host once ready and stops on
// SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xen-operator/xen-operator/internal/xapisim"
)

func main() {
	var (
		cfg         xapisim.Config
		opDurations string
		hostMemory  string
	)
	flag.IntVar(&cfg.Hosts, "hosts", 1, "Hosts in the pool; host i listens on 127.0.0.<i>, the first is the coordinator.")
	flag.IntVar(&cfg.Port, "port", 0, "Port every host listens on (0 picks a free one).")
	flag.StringVar(&cfg.Username, "username", "root", "The only valid user name.")
	flag.StringVar(&cfg.Password, "password", "xenserver", "The only valid password.")
	flag.DurationVar(&cfg.AuthFailureDelay, "auth-failure-delay", 5*time.Second, "Delay before a failed login answers (xapi: 5s).")
	flag.DurationVar(&cfg.GCInterval, "gc-interval", 30*time.Second, "How often the database GC pass collects tasks and sessions (xapi: 30s).")
	flag.IntVar(&cfg.MaxSessions, "max-sessions", 400, "Anonymous sessions (root, no originator) the GC pass keeps, least recently active evicted first (xapi: 400).")
	flag.IntVar(&cfg.MaxSessionsPerOriginator, "max-sessions-per-originator", 500, "Root sessions per originator the GC pass keeps (xapi: 500).")
	flag.IntVar(&cfg.MaxSessionsPerUserName, "max-sessions-per-user", 500, "Sessions per user name, other than root, the GC pass keeps (xapi: 500).")
	flag.DurationVar(&cfg.InactiveSessionTimeout, "session-timeout", 24*time.Hour, "The GC pass destroys sessions inactive for longer (xapi: 24h).")
	flag.DurationVar(&cfg.LastActiveThreshold, "last-active-threshold", 10*time.Minute, "A call moves a session's last_active only when it is older than this (xapi: 10m).")
	flag.DurationVar(&cfg.CompletedTaskTimeout, "completed-task-timeout", 65*time.Minute, "The GC pass destroys tasks completed longer ago (xapi: 65m).")
	flag.DurationVar(&cfg.PendingTaskTimeout, "pending-task-timeout", 24*time.Hour, "The GC pass destroys pending tasks older than this that no longer progress (xapi: 24h).")
	flag.DurationVar(&cfg.Latency, "latency", 0, "Added to every call.")
	flag.DurationVar(&cfg.Jitter, "jitter", 0, "Random extra latency, up to this much.")
	flag.DurationVar(&cfg.OpDuration, "op-duration", 0, "How long VM and host operations take.")
	flag.StringVar(&opDurations, "op-durations", "", "Per-operation durations overriding --op-duration, e.g. clone=200ms,provision=1s,start=2s,clean_shutdown=1s.")
	flag.DurationVar(&cfg.BootDelay, "boot-delay", 0, "Time from start to the guest agent reporting PV drivers and IPs.")
	flag.Float64Var(&cfg.FailureRate, "failure-rate", 0, "Probability (0..1) that a mutating call fails with a realistic error.")
	flag.Float64Var(&cfg.ResponseLossRate, "response-loss-rate", 0,
		"Probability (0..1) that a mutating call runs but its answer is lost (the connection closes without a reply).")
	flag.StringVar(&hostMemory, "host-memory", "", "Memory of each host, e.g. 256Gi (default 1Ti).")
	flag.BoolVar(&cfg.TLS, "tls", false, "Serve HTTPS with a generated self-signed certificate.")
	flag.StringVar(&cfg.CAFile, "ca-file", filepath.Join(os.TempDir(), "xapi-simulator-ca.pem"), "Where --tls writes its CA certificate.")
	var brownfield int
	var brownfieldStart bool
	flag.IntVar(&brownfield, "brownfield", 0, "VMs to make at startup as another tool would (clone, provision, one VIF on the management network); see POST /sim/brownfield.")
	flag.BoolVar(&brownfieldStart, "brownfield-start", false, "Start the --brownfield VMs.")
	flag.Parse()

	var err error
	if cfg.OpDurations, err = parseOpDurations(opDurations); err != nil {
		fail(err)
	}
	if hostMemory != "" {
		if cfg.HostMemory, err = parseBytes(hostMemory); err != nil {
			fail(err)
		}
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)

	sim, err := xapisim.New(cfg)
	if err != nil {
		fail(err)
	}
	if cfg.TLS {
		fmt.Printf("xapi-simulator CA certificate in %s\n", cfg.CAFile)
	}
	if brownfield > 0 {
		vms, err := sim.Brownfield(brownfield, "Debian Bookworm 12", "brownfield", brownfieldStart)
		if err != nil {
			sim.Close()
			fail(err)
		}
		for _, vm := range vms {
			fmt.Printf("xapi-simulator brownfield VM %s %s\n", vm.UUID, vm.NameLabel)
		}
	}
	for _, u := range sim.URLs() {
		fmt.Printf("xapi-simulator listening on %s\n", u)
	}
	<-signals
	sim.Close()
}

func parseOpDurations(s string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("--op-durations: %q is not op=duration", kv)
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("--op-durations: %s: %w", k, err)
		}
		out[k] = d
	}
	return out, nil
}

func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			var v int64
			if _, err := fmt.Sscan(n, &v); err != nil {
				return 0, fmt.Errorf("bad size %q", s)
			}
			return v * u.mult, nil
		}
	}
	var v int64
	if _, err := fmt.Sscan(s, &v); err != nil {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "xapi-simulator:", err)
	os.Exit(1)
}
