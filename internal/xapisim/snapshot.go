package xapisim

import (
	"time"
)

// Snapshot is what the simulated pool holds at one moment, read directly
// (no session, no call counted), for suites that check what clients left
// behind: VMs, disks, tasks and sessions.
type Snapshot struct {
	VMs      []SnapshotVM
	VDIs     []SnapshotVDI
	Tasks    []SnapshotTask
	Sessions []SnapshotSession
}

// SnapshotVM is a VM, template or control domain.
type SnapshotVM struct {
	Ref, UUID, NameLabel, PowerState string
	IsTemplate, IsControlDomain      bool
	OtherConfig                      map[string]string
	// VBDs are the VM's disk attachments; SuspendVDI its suspend image, if
	// any; VIFs its network interfaces.
	VBDs       []string
	SuspendVDI string
	VIFs       []string
	// CurrentOperations are the operations running on the VM.
	CurrentOperations []string
}

// SnapshotVDI is a virtual disk.
type SnapshotVDI struct {
	Ref, UUID, NameLabel, Type string
	// VBDs are the attachments that use the disk.
	VBDs        []string
	OtherConfig map[string]string
}

// SnapshotTask is a task, pending or completed and not destroyed yet.
type SnapshotTask struct {
	Ref, NameLabel, Status string
	// Originator is the originator of the session that created the task,
	// while that session exists.
	Originator string
}

// SnapshotSession is a session.
type SnapshotSession struct {
	Ref, Originator, User string
	// LoggedIn is when the session was created.
	LoggedIn time.Time
}

// Snapshot returns the pool's VMs, VDIs, tasks and sessions.
func (s *Server) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	strs := func(o *object, name string) []string {
		var out []string
		for _, v := range o.set(name) {
			if r, ok := v.(string); ok {
				out = append(out, r)
			}
		}
		return out
	}
	var snap Snapshot
	for _, o := range s.db.all("VM") {
		vm := SnapshotVM{Ref: o.ref, UUID: o.str("uuid"), NameLabel: o.str("name_label"), PowerState: o.str("power_state"),
			IsTemplate: o.bool("is_a_template"), IsControlDomain: o.bool("is_control_domain"),
			OtherConfig: strMap(o, "other_config"), VBDs: strs(o, "VBDs"), SuspendVDI: o.str("suspend_VDI"),
			VIFs: strs(o, "VIFs")}
		for _, op := range o.strMap("current_operations") {
			name, _ := op.(string)
			vm.CurrentOperations = append(vm.CurrentOperations, name)
		}
		if vm.SuspendVDI == nullRef {
			vm.SuspendVDI = ""
		}
		snap.VMs = append(snap.VMs, vm)
	}
	for _, o := range s.db.all("VDI") {
		snap.VDIs = append(snap.VDIs, SnapshotVDI{Ref: o.ref, UUID: o.str("uuid"), NameLabel: o.str("name_label"),
			Type: o.str("type"), VBDs: strs(o, "VBDs"), OtherConfig: strMap(o, "other_config")})
	}
	for _, o := range s.db.all("task") {
		t := SnapshotTask{Ref: o.ref, NameLabel: o.str("name_label"), Status: o.str("status")}
		if sess, ok := s.db.get("session", o.sim.session); ok {
			t.Originator = sess.str("originator")
		}
		snap.Tasks = append(snap.Tasks, t)
	}
	for _, o := range s.db.all("session") {
		loggedIn, _ := o.fields["validation_time"].(time.Time)
		snap.Sessions = append(snap.Sessions, SnapshotSession{Ref: o.ref, Originator: o.str("originator"),
			User: o.str("auth_user_name"), LoggedIn: loggedIn})
	}
	return snap
}

// strMap is a string-to-string map field as a Go map.
func strMap(o *object, name string) map[string]string {
	out := map[string]string{}
	for k, v := range o.strMap(name) {
		out[k], _ = v.(string)
	}
	return out
}
