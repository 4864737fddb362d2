package vmservice

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestDiskPlanRewrite(t *testing.T) {
	const tmpl = `<provision><disk device="0" size="10737418240" sr="" bootable="true" type="system"/>` +
		`<disk device="1" size="1048576" sr="" bootable="false" type="system"/></provision>`
	for _, tc := range []struct {
		name  string
		disks string
		plan  DiskPlan
		want  string
	}{{
		name:  "no plan: unchanged",
		disks: tmpl,
		want:  tmpl,
	}, {
		name:  "every disk without an SR goes to the default SR",
		disks: tmpl,
		plan:  DiskPlan{DefaultSR: "def"},
		want: `<provision><disk device="0" size="10737418240" sr="def" bootable="true" type="system"/>` +
			`<disk device="1" size="1048576" sr="def" bootable="false" type="system"/></provision>`,
	}, {
		name:  "root gets its own SR and a larger size; the others the default SR",
		disks: tmpl,
		plan:  DiskPlan{DefaultSR: "def", RootSR: "fast", RootSize: 20 << 30},
		want: `<provision><disk device="0" size="21474836480" sr="fast" bootable="true" type="system"/>` +
			`<disk device="1" size="1048576" sr="def" bootable="false" type="system"/></provision>`,
	}, {
		name:  "root is never made smaller than the template's",
		disks: tmpl,
		plan:  DiskPlan{DefaultSR: "def", RootSize: 1 << 30},
		want: `<provision><disk device="0" size="10737418240" sr="def" bootable="true" type="system"/>` +
			`<disk device="1" size="1048576" sr="def" bootable="false" type="system"/></provision>`,
	}, {
		name:  "without a bootable disk the first is root",
		disks: `<provision><disk device="0" size="5" sr="x"/></provision>`,
		plan:  DiskPlan{RootSize: 7},
		want:  `<provision><disk device="0" size="7" sr="x"/></provision>`,
	}, {
		name:  "an SR already set stays",
		disks: `<provision><disk device="0" size="5" sr="x" bootable="true"/><disk device="1" size="5" sr="y"/></provision>`,
		plan:  DiskPlan{DefaultSR: "def"},
		want:  `<provision><disk device="0" size="5" sr="x" bootable="true"/><disk device="1" size="5" sr="y"/></provision>`,
	}, {
		name:  "XML that cannot be read is left alone",
		disks: `<provision><disk`,
		plan:  DiskPlan{DefaultSR: "def"},
		want:  `<provision><disk`,
	}, {
		name: "nothing to rewrite",
		plan: DiskPlan{DefaultSR: "def"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := tc.plan.Rewrite(tc.disks)
			g.Expect(got).To(Equal(tc.want))
			g.Expect(tc.plan.Rewrite(got)).To(Equal(got), "a rewrite is stable")
		})
	}
}
