package memlimit

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

func write(g Gomega, path, content string) {
	g.Expect(os.MkdirAll(filepath.Dir(path), 0o755)).To(Succeed())
	g.Expect(os.WriteFile(path, []byte(content), 0o600)).To(Succeed())
}

func TestCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		name, self string
		files      map[string]string
		want       int64
		noLimit    bool
	}{
		{name: "v2 in a container's cgroup namespace", self: "0::/\n",
			files: map[string]string{"memory.max": "268435456\n"}, want: 256 << 20},
		{name: "v2 without a namespace", self: "0::/kubepods/burstable/pod1/c1\n",
			files: map[string]string{"kubepods/burstable/pod1/c1/memory.max": "536870912\n"}, want: 512 << 20},
		{name: "v2 unlimited", self: "0::/\n", files: map[string]string{"memory.max": "max\n"}, noLimit: true},
		{name: "v1", self: "12:pids:/x\n11:cpu,cpuacct:/x\n4:memory:/kubepods/pod1\n",
			files: map[string]string{"memory/kubepods/pod1/memory.limit_in_bytes": "268435456"}, want: 256 << 20},
		{name: "v1 unlimited", self: "4:memory:/\n",
			files: map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712"}, noLimit: true},
		{name: "v1, the container's cgroup mounted without a namespace", self: "4:memory:/docker/abc\n",
			files: map[string]string{"memory/memory.limit_in_bytes": "134217728"}, want: 128 << 20},
		{name: "v2 root cgroup: no limit file", self: "0::/\n", noLimit: true},
		{name: "no memory controller", self: "12:pids:/x\n", noLimit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			dir := t.TempDir()
			write(g, filepath.Join(dir, "self"), tc.self)
			for path, content := range tc.files {
				write(g, filepath.Join(dir, "fs", path), content)
			}
			got, err := CgroupLimit(filepath.Join(dir, "self"), filepath.Join(dir, "fs"))
			if tc.noLimit {
				g.Expect(err).To(MatchError(ErrNoLimit))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestApplyLeavesGOMEMLIMITAlone(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("GOMEMLIMIT", "100MiB")
	got, err := Apply(0.9)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(BeZero())
	g.Expect(os.Unsetenv("GOMEMLIMIT")).To(Succeed()) // t.Setenv puts it back
	got, err = Apply(0)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(BeZero(), "ratio 0 turns it off")
	for _, bad := range []float64{-0.1, 1.5, 80, math.NaN()} {
		_, err = Apply(bad)
		g.Expect(err).To(MatchError(ErrBadRatio), "ratio %v", bad)
	}
}

func TestCgroupLimitWithoutCgroups(t *testing.T) {
	_, err := CgroupLimit(filepath.Join(t.TempDir(), "no-such-file"), t.TempDir())
	NewWithT(t).Expect(err).To(MatchError(ErrNoLimit))
}
