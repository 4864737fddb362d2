// Package memlimit gives the Go runtime the memory limit of the container
// the manager runs in.
//
// The runtime does not know a container's limit: with GOGC's default the
// heap may grow to twice what is live before a collection, and a manager
// whose live heap is half its limit is killed for memory it did not need.
// A soft limit (debug.SetMemoryLimit, GOMEMLIMIT) below the container's
// makes the collector run earlier as the heap nears it. This is what
// Prometheus does with --auto-gomemlimit.ratio (0.9 by default; the
// manager's default is 0.8, leaving room for its code pages) and what
// the Go GC guide advises for containers.
package memlimit

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultRatio is the share of the container's limit the manager takes by
// default: the rest holds its code pages (about 45 MiB resident), which the
// cgroup counts too.
const DefaultRatio = 0.8

// ErrNoLimit says the process's cgroup sets no memory limit.
var ErrNoLimit = errors.New("no cgroup memory limit")

// ErrBadRatio says a ratio is not a share: 0 (off) up to 1.
var ErrBadRatio = errors.New("the memory limit ratio must be between 0 (off) and 1")

// Apply sets the runtime's soft memory limit to ratio of the process's
// cgroup memory limit, unless GOMEMLIMIT is set (the runtime read it) or
// ratio is 0. It returns the limit set, 0 when it set none.
func Apply(ratio float64) (int64, error) {
	if !(ratio >= 0 && ratio <= 1) { // NaN too
		return 0, ErrBadRatio
	}
	if os.Getenv("GOMEMLIMIT") != "" || ratio == 0 {
		return 0, nil
	}
	limit, err := CgroupLimit("/proc/self/cgroup", "/sys/fs/cgroup")
	if err != nil {
		return 0, err
	}
	soft := int64(float64(limit) * ratio)
	debug.SetMemoryLimit(soft)
	return soft, nil
}

// CgroupLimit reads the memory limit of the cgroup selfCgroup (a
// /proc/<pid>/cgroup file) names, under the cgroup filesystem at root:
// memory.max in cgroup v2 (inside a container's cgroup namespace the path
// is "/", the container's own), memory.limit_in_bytes in v1. An
// unlimited cgroup ("max", or v1's page-rounded maximum) is ErrNoLimit.
func CgroupLimit(selfCgroup, root string) (int64, error) {
	data, err := os.ReadFile(filepath.Clean(selfCgroup))
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrNoLimit // not Linux: no cgroups
	}
	if err != nil {
		return 0, err
	}
	var v2, v1 string
	haveV2, haveV1 := false, false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, haveV2 = parts[2], true
		case hasController(parts[1], "memory"):
			v1, haveV1 = parts[2], true
		}
	}
	switch {
	case haveV1:
		return readLimit(filepath.Join(root, "memory"), v1, "memory.limit_in_bytes")
	case haveV2:
		return readLimit(root, v2, "memory.max")
	}
	return 0, ErrNoLimit
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// v1Unlimited is what cgroup v1 reports without a limit: the largest
// int64 rounded down to a page (or more).
const v1Unlimited = int64(1) << 62

// readLimit reads the limit file of the cgroup at path under the hierarchy
// mounted at mount; a container runtime that mounts the container's own
// cgroup there without a cgroup namespace leaves path pointing outside
// it: then the mount's own file is the container's.
func readLimit(mount, path, name string) (int64, error) {
	// path comes from /proc/self/cgroup: the kernel names the process's cgroup.
	data, err := os.ReadFile(filepath.Clean(filepath.Join(mount, path, name))) //nolint:gosec // see above
	if errors.Is(err, os.ErrNotExist) {
		data, err = os.ReadFile(filepath.Clean(filepath.Join(mount, name)))
	}
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrNoLimit // the root cgroup has no limit file
	}
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, ErrNoLimit
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n <= 0 || n >= v1Unlimited {
		return 0, ErrNoLimit
	}
	return n, nil
}
