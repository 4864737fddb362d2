package main

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
)

func TestPlanIsReproducibleAndSpread(t *testing.T) {
	g := NewWithT(t)
	window := 40 * time.Second
	a, b := plan(42, 3, window), plan(42, 3, window)
	g.Expect(a).To(Equal(b), "one seed, one schedule")
	g.Expect(plan(43, 3, window)).NotTo(Equal(a), "another seed, another schedule")

	for seed := int64(1); seed <= 200; seed++ {
		faults := plan(seed, 3, window)
		g.Expect(faults[0].Kind).To(Equal(faultCalls), "failing calls from the apply")
		kinds := map[string]int{}
		prevAt, prevShare := 0.0, 0.0
		for _, f := range faults[1:] {
			kinds[f.Kind]++
			g.Expect(f.At).To(BeNumerically(">", prevAt), "in order of time")
			g.Expect(f.AtConverged).To(BeNumerically(">", prevShare), "and of progress")
			g.Expect(f.At).To(BeNumerically("<=", 0.8*window.Seconds()), "inside the window")
			g.Expect(f.AtConverged).To(And(BeNumerically(">=", 0.1), BeNumerically("<=", 0.85)), "mid-install")
			prevAt, prevShare = f.At, f.AtConverged
		}
		g.Expect(kinds[faultKill]).To(Equal(3))
		g.Expect(kinds[faultFlush]).To(BeElementOf(1, 2))
		g.Expect(kinds[faultRestart]).To(Equal(1))
		g.Expect(faults[len(faults)-1].Kind).To(Equal(faultRestart), "the running manager recovers from xapi's restart by itself")
		g.Expect(kinds[faultRefuse]).To(Equal(1))
		for _, f := range faults[1:] {
			switch f.Kind {
			case faultKill:
				g.Expect(f.Param).To(And(BeNumerically(">=", 1), BeNumerically("<=", 3)))
			case faultRestart:
				g.Expect(f.Param).To(And(BeNumerically(">=", 2), BeNumerically("<=", 4)))
			case faultRefuse:
				g.Expect(f.Param).To(And(BeNumerically(">=", 3), BeNumerically("<=", 6)))
			}
		}
	}
}

func TestXenVMsMix(t *testing.T) {
	g := NewWithT(t)
	objs := xenVMs(Settings{N: 150, Seed: 7})
	g.Expect(objs).To(HaveLen(150))
	states := map[virtv1alpha1.PowerState]int{}
	templates := map[string]bool{}
	hard := 0
	for _, o := range objs {
		states[o.Spec.PowerState]++
		templates[o.Spec.Template] = true
		if o.Spec.PowerOffMode == virtv1alpha1.PowerOffHard {
			hard++
		}
		g.Expect(o.Spec.Template).NotTo(Equal("Other install media"), "only templates whose guests have an agent")
	}
	g.Expect(states).To(Equal(map[virtv1alpha1.PowerState]int{
		virtv1alpha1.PowerStateRunning: 74, virtv1alpha1.PowerStateHalted: 30,
		virtv1alpha1.PowerStateSuspended: 23, virtv1alpha1.PowerStatePaused: 23}))
	g.Expect(templates).To(HaveLen(6))
	g.Expect(hard).To(And(BeNumerically(">", 15), BeNumerically("<", 60)))
	g.Expect(xenVMs(Settings{N: 150, Seed: 7})).To(Equal(objs), "one seed, one mix")
}

func TestDerivedBounds(t *testing.T) {
	g := NewWithT(t)
	small, large := Settings{N: 30, Concurrency: 16, CallLatencyMS: 2, JitterMS: 2, CloneMS: 100, ProvisionMS: 300, OpMS: 200},
		Settings{N: 500, Concurrency: 16, CallLatencyMS: 2, JitterMS: 2, CloneMS: 100, ProvisionMS: 300, OpMS: 200}
	derive(&small, 0, 0)
	derive(&large, 0, 0)
	g.Expect(small.WindowSeconds).To(BeNumerically("==", 30), "at least 30 s for the faults to fit")
	g.Expect(large.WindowSeconds).To(BeNumerically(">", small.WindowSeconds), "scaled to N")
	g.Expect(large.BoundSeconds).To(BeNumerically(">", small.BoundSeconds))
	g.Expect(small.BoundSeconds).To(BeNumerically(">=", small.WindowSeconds+60))
	g.Expect(large.DeleteBoundSeconds).To(BeNumerically(">", small.DeleteBoundSeconds))

	set := Settings{N: 30, Concurrency: 16}
	derive(&set, 5*time.Minute, time.Minute)
	g.Expect(set.BoundSeconds).To(BeNumerically("==", 300), "-bound wins")
	g.Expect(set.DeleteBoundSeconds).To(BeNumerically("==", 60))
}
