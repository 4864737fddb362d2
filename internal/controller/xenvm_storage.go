package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/vmservice"
	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// lookupProblem is why a name in the spec does not resolve to one object of
// the pool: a condition reason and message.
type lookupProblem struct {
	reason, msg string
}

// byNameOrUUID finds exactly one object of a store by UUID or name_label;
// a UUID match wins. kind names the class in the problem's message.
func byNameOrUUID[T any](s *cache.Store[T], nameOrUUID, kind string, uuid func(T) string,
	notFound, ambiguous string) (T, *lookupProblem) {
	var zero T
	if objs := s.ByIndex(cache.IndexUUID, nameOrUUID); len(objs) == 1 {
		return objs[0], nil
	}
	objs := s.ByIndex(cache.IndexName, nameOrUUID)
	switch len(objs) {
	case 1:
		return objs[0], nil
	case 0:
		return zero, &lookupProblem{notFound, fmt.Sprintf("No %s of the pool is named %q or has that UUID", kind, nameOrUUID)}
	}
	uuids := make([]string, len(objs))
	for i, o := range objs {
		uuids[i] = uuid(o)
	}
	slices.Sort(uuids)
	return zero, &lookupProblem{ambiguous, fmt.Sprintf("%d %ss are named %q (%s): name one by UUID",
		len(objs), kind, nameOrUUID, strings.Join(uuids, ", "))}
}

// resolveSR finds the SR a disk names ("" for the pool's default SR) and
// checks that it can hold VM disks.
func resolveSR(c *cache.Cache, name, disk string) (*xenapi.SR, *lookupProblem) {
	var sr *xenapi.SR
	if name == "" {
		def, ok := c.DefaultSR()
		if !ok {
			return nil, &lookupProblem{virtv1alpha1.ReasonStorageNotFound,
				fmt.Sprintf("Disk %s names no storage and the pool has no default SR", disk)}
		}
		sr = def
	} else {
		var p *lookupProblem
		sr, p = byNameOrUUID(c.SRs, name, "SR", func(s *xenapi.SR) string { return s.UUID },
			virtv1alpha1.ReasonStorageNotFound, virtv1alpha1.ReasonStorageAmbiguous)
		if p != nil {
			p.msg = "Disk " + disk + ": " + p.msg
			return nil, p
		}
	}
	if sr.ContentType == "iso" || !sr.Allows("vdi_create") {
		return nil, &lookupProblem{virtv1alpha1.ReasonStorageNotSuitable,
			fmt.Sprintf("Disk %s: SR %q (type %s) cannot hold VM disks", disk, sr.NameLabel, sr.Type)}
	}
	return sr, nil
}

// storagePlan is the SRs of the spec's disks, by disk name, resolved and
// checked together: the local SRs they use must all be on one host, the
// affinity host if the spec names one.
type storagePlan struct {
	srs map[string]*xenapi.SR
}

// planStorage resolves the spec's disks' SRs. Disks that exist already are
// checked where they are (rootSR is the root disk's SR once installed).
// affinity is the host they must all be reachable from ("" for none): the
// install checks spec.affinityHost before anything is created; for an
// installed VM, moving it is the placement phase's, and xapi's
// assert_can_boot_here says whether its disks allow it.
func planStorage(c *cache.Cache, obj *virtv1alpha1.XenVM, existing map[string]*xenapi.SR, affinity string) (storagePlan, *lookupProblem) {
	plan := storagePlan{srs: map[string]*xenapi.SR{}}
	for _, d := range obj.Spec.Disks {
		if sr, ok := existing[d.Name]; ok {
			plan.srs[d.Name] = sr
			continue
		}
		sr, p := resolveSR(c, d.Storage, d.Name)
		if p != nil {
			return plan, p
		}
		plan.srs[d.Name] = sr
	}
	for name, sr := range existing {
		if _, ok := plan.srs[name]; !ok {
			plan.srs[name] = sr
		}
	}
	return plan, plan.checkHosts(c, affinity)
}

// checkHosts refuses local SRs of different hosts, or of another host than
// the affinity host: xapi could start the VM nowhere, or not where asked.
func (p storagePlan) checkHosts(c *cache.Cache, affinity string) *lookupProblem {
	var pinned *xenapi.SR
	var pinnedHost string
	for _, name := range slices.Sorted(maps.Keys(p.srs)) {
		sr := p.srs[name]
		hosts := c.HostsOf(sr)
		if sr.Shared || len(hosts) != 1 {
			continue
		}
		switch {
		case pinned == nil:
			pinned, pinnedHost = sr, hosts[0]
		case hosts[0] != pinnedHost:
			return &lookupProblem{virtv1alpha1.ReasonStorageConflict, fmt.Sprintf(
				"SRs %q and %q are local to different hosts: no host can run the VM", pinned.NameLabel, sr.NameLabel)}
		}
	}
	if pinned == nil || affinity == "" {
		return nil
	}
	if h, ok := vmservice.HostByNameOrUUID(c, affinity); ok && h.Ref != pinnedHost {
		return &lookupProblem{virtv1alpha1.ReasonStorageConflict, fmt.Sprintf(
			"SR %q is local to another host than affinityHost %q", pinned.NameLabel, affinity)}
	}
	return nil
}

// diskPlan is what the install makes of the template's disks.
func (p storagePlan) diskPlan(c *cache.Cache, obj *virtv1alpha1.XenVM) vmservice.DiskPlan {
	var plan vmservice.DiskPlan
	if sr, ok := c.DefaultSR(); ok {
		plan.DefaultSR = sr.UUID
	}
	if root := specDisk(obj, virtv1alpha1.RootDiskName); root != nil {
		if sr := p.srs[root.Name]; sr != nil && root.Storage != "" {
			plan.RootSR = sr.UUID
		}
		if root.Size != "" {
			plan.RootSize = root.SizeBytes()
		}
	}
	return plan
}

// specDisk returns the spec's disk with a name, nil when there is none.
func specDisk(obj *virtv1alpha1.XenVM, name string) *virtv1alpha1.Disk {
	for i := range obj.Spec.Disks {
		if obj.Spec.Disks[i].Name == name {
			return &obj.Spec.Disks[i]
		}
	}
	return nil
}

// storageProblem reports a disk the pool cannot hold in DisksSynced, and
// stops: no XenAPI call is made, and the pool's changes wake the XenVM.
func (r *XenVMReconciler) storageProblem(s *vmScope, p *lookupProblem) {
	s.failed = true
	s.stop()
	s.cond(virtv1alpha1.ConditionDisksSynced, metav1.ConditionFalse, p.reason, "%s", p.msg)
}
