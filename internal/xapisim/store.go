package xapisim

import (
	"crypto/rand"
	"fmt"
	"sort"
	"time"
)

const nullRef = "OpaqueRef:NULL"

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func newRef() string { return "OpaqueRef:" + newUUID() }

// object is one row of xapi's database.
type object struct {
	class  *classInfo
	ref    string
	fields map[string]any
	// created and modified are the database generations of the object's
	// creation and last change; event.from compares them with its token.
	created, modified uint64
	sim               simState
}

// simState is what the simulator keeps about an object besides its fields.
type simState struct {
	// noPVDrivers marks a VM (and its clones) whose guest never runs a
	// guest agent.
	noPVDrivers bool
	// bootGen counts the VM's boots; a guest agent reports only for the boot
	// it belongs to.
	bootGen int
	// cancel is closed by task.cancel on a pending task, and when xapi
	// restarts; aborted tells the latter, which ends any operation.
	cancel  chan struct{}
	aborted bool
	// session is the session that created a task.
	session string
	// memoryFree is a host's free memory (xapi computes it; the datamodel
	// has no field for it).
	memoryFree int64
	// ip numbers the addresses a VIF's guest interface has, 0 until the
	// guest first reports it; up is when the guest's interface came up
	// (zero while it is down or unseen).
	ip int64
	up time.Time
	// guest is how a VM's guest reports its addresses (/sim/guest);
	// guestWake when its agent is next due to report them.
	guest     guestMode
	guestWake time.Time
	// data is a VDI's content as far as it was written (zeros beyond, up to
	// its virtual size); vhdBlocks the 2 MiB VHD blocks a thin SR's disk
	// has allocated for it.
	data      []byte
	vhdBlocks map[int64]bool
	// cloudInit is what a VM's guest set up from a config drive it found
	// at a boot (nil if it never found one).
	cloudInit *cloudInit
	// metadata is a snapshot's copy of its VM's fields at the snapshot
	// (what xapi keeps in snapshot_metadata), which VM.revert restores.
	metadata map[string]any
}

func (o *object) str(name string) string {
	s, _ := o.fields[name].(string)
	return s
}

func (o *object) int(name string) int64 {
	i, _ := o.fields[name].(int64)
	return i
}

func (o *object) bool(name string) bool {
	b, _ := o.fields[name].(bool)
	return b
}

func (o *object) strMap(name string) map[string]any {
	m, _ := o.fields[name].(map[string]any)
	if m == nil {
		m = map[string]any{}
		o.fields[name] = m
	}
	return m
}

func (o *object) set(name string) []any {
	s, _ := o.fields[name].([]any)
	return s
}

// deletion remembers a destroyed object for event.from.
type deletion struct {
	gen   uint64
	class string
	ref   string
}

// store is the simulator's database. Every access holds Server.mu.
type store struct {
	gen       uint64
	objects   map[string]map[string]*object // class -> ref -> object
	byUUID    map[string]*object
	deletions []deletion
	// changed is closed (and replaced) whenever the generation moves, waking
	// blocked event.from calls.
	changed chan struct{}
	dirty   bool
}

func newStore() *store {
	s := &store{objects: map[string]map[string]*object{}, byUUID: map[string]*object{}, changed: make(chan struct{})}
	for name := range model {
		s.objects[name] = map[string]*object{}
	}
	return s
}

// create inserts an object of class with the given fields; every other field
// gets the datamodel's default, or its type's zero value.
func (s *store) create(class string, fields map[string]any) *object {
	ci := model[class]
	o := &object{class: ci, ref: newRef(), fields: make(map[string]any, len(ci.fields))}
	for _, f := range ci.fields {
		if v, ok := fields[f.name]; ok {
			o.fields[f.name] = v
		} else {
			o.fields[f.name] = copyValue(f.def)
		}
	}
	if _, ok := ci.fieldIdx["uuid"]; ok {
		if o.str("uuid") == "" {
			o.fields["uuid"] = newUUID()
		}
		s.byUUID[o.str("uuid")] = o
	}
	s.gen++
	o.created, o.modified = s.gen, s.gen
	s.objects[class][o.ref] = o
	s.dirty = true
	for _, r := range relations[class] {
		s.link(o, r)
	}
	return o
}

// link adds o to the set its relation field points into; unlink removes it.
func (s *store) link(o *object, r relation) {
	if t, ok := s.objects[r.target][o.str(r.field)]; ok {
		s.refSetAdd(t, r.setField, o.ref)
	}
}

func (s *store) unlink(o *object, r relation) {
	if t, ok := s.objects[r.target][o.str(r.field)]; ok {
		s.refSetRemove(t, r.setField, o.ref)
	}
}

// touch records a change to o.
func (s *store) touch(o *object) {
	s.gen++
	o.modified = s.gen
	s.dirty = true
}

// update sets fields of o and records the change; the sets of the
// relations whose fields change follow.
func (s *store) update(o *object, kv ...any) {
	var moved []relation
	for i := 0; i+1 < len(kv); i += 2 {
		name := kv[i].(string)
		for _, r := range relations[o.class.name] {
			if r.field == name && o.fields[name] != kv[i+1] {
				s.unlink(o, r)
				moved = append(moved, r)
			}
		}
		o.fields[name] = kv[i+1]
	}
	for _, r := range moved {
		s.link(o, r)
	}
	s.touch(o)
}

func (s *store) destroy(o *object) {
	if _, ok := s.objects[o.class.name][o.ref]; !ok {
		return
	}
	for _, r := range relations[o.class.name] {
		s.unlink(o, r)
	}
	if o.class.name == "task" {
		if sess, ok := s.objects["session"][o.sim.session]; ok {
			s.refSetRemove(sess, "tasks", o.ref)
		}
	}
	delete(s.objects[o.class.name], o.ref)
	if u := o.str("uuid"); u != "" && s.byUUID[u] == o {
		delete(s.byUUID, u)
	}
	s.gen++
	if o.class.events {
		s.deletions = append(s.deletions, deletion{gen: s.gen, class: o.class.name, ref: o.ref})
	}
	s.dirty = true
}

func (s *store) get(class, ref string) (*object, bool) {
	o, ok := s.objects[class][ref]
	return o, ok
}

// mustGet returns the object or HANDLE_INVALID [class; ref].
func (s *store) mustGet(class, ref string) (*object, error) {
	if o, ok := s.objects[class][ref]; ok {
		return o, nil
	}
	return nil, handleInvalid(class, ref)
}

// all returns the objects of a class ordered by creation.
func (s *store) all(class string) []*object {
	out := make([]*object, 0, len(s.objects[class]))
	for _, o := range s.objects[class] {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].created < out[j].created })
	return out
}

// notify wakes event.from waiters if anything changed since the last call.
func (s *store) notify() {
	if !s.dirty {
		return
	}
	s.dirty = false
	close(s.changed)
	s.changed = make(chan struct{})
}

// recordOf renders o as its get_record struct: every field, in datamodel order.
func recordOf(o *object) *record {
	r := &record{names: make([]string, 0, len(o.class.fields)), values: make([]any, 0, len(o.class.fields))}
	for _, f := range o.class.fields {
		r.add(f.name, copyValue(o.fields[f.name]))
	}
	return r
}

// copyValue deep-copies sets and maps so that a rendered record does not
// share memory with the database.
func copyValue(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = copyValue(e)
		}
		return out
	}
	return v
}

// refSetAdd and refSetRemove maintain a set-of-refs field.
func (s *store) refSetAdd(o *object, name, ref string) {
	for _, r := range o.set(name) {
		if r == ref {
			return
		}
	}
	s.update(o, name, append(append([]any{}, o.set(name)...), ref))
}

func (s *store) refSetRemove(o *object, name, ref string) {
	cur := o.set(name)
	out := make([]any, 0, len(cur))
	for _, r := range cur {
		if r != ref {
			out = append(out, r)
		}
	}
	if len(out) != len(cur) {
		s.update(o, name, out)
	}
}

// setIfChanged updates a set-of-strings field only when its value changes,
// so that recomputing it does not make events of its own.
func setIfChanged(s *store, o *object, name string, value []any) {
	cur := o.set(name)
	if len(cur) == len(value) {
		same := true
		for i := range cur {
			if cur[i] != value[i] {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	s.update(o, name, value)
}
