package xapisim

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// method is a XenAPI message the simulator serves.
type method struct {
	class, name, wire string
	// params are the parameters after the session.
	params []param
	// session tells whether the first wire parameter is a session ref.
	session bool
	// minArgs is the fewest parameters (session excluded) accepted; xapi
	// fills later ones from their defaults.
	minArgs  int
	defaults []any
	result   *xtype
	handler  func(*callCtx) (any, error)
	async    bool
	mutating bool
	// removed marks a message removed from the API: xapi answers it with
	// MESSAGE_REMOVED once the session is checked (gen_server.ml).
	removed bool
}

// explicit is the implementation of a message that is not a plain field
// accessor.
type explicit struct {
	fn       func(*callCtx) (any, error)
	async    bool
	mutating bool
	// defaults of trailing parameters that callers may leave out.
	defaults []any
}

// explicitHandlers is filled by the init functions of the files that
// implement each class; the method table is built on first use, after them.
var explicitHandlers = map[string]explicit{}

var (
	// methods maps wire names ("VM.start") to what serves them.
	methods     map[string]*method
	methodsOnce sync.Once
)

func buildMethods() {
	methods = map[string]*method{}
	for _, ci := range model {
		for _, msg := range ci.messages {
			m := &method{class: ci.name, name: msg.name, wire: msg.wire, result: msg.result}
			params := msg.params
			if len(params) > 0 && params[0].typ.kind == kRef && params[0].typ.name == "session" && params[0].name == "session_id" {
				m.session = true
				params = params[1:]
			}
			m.params = params
			m.minArgs = len(params)
			if msg.removed {
				m.removed = true
				methods[msg.wire] = m
				continue
			}
			if ex, ok := explicitHandlers[msg.wire]; ok {
				m.handler, m.async, m.mutating = ex.fn, ex.async, ex.mutating
				if len(ex.defaults) > 0 {
					m.minArgs = len(params) - len(ex.defaults)
					m.defaults = make([]any, len(params))
					copy(m.defaults[m.minArgs:], ex.defaults)
				}
			} else if msg.implicit || plainSetter(ci, msg) {
				m.handler, m.mutating = implicitHandler(ci, msg.name)
			}
			if m.handler == nil {
				continue
			}
			methods[msg.wire] = m
		}
	}
	for wire := range explicitHandlers {
		if m := methods[wire]; m == nil || m.removed {
			panic(fmt.Sprintf("xapisim: %s is implemented but not in the datamodel", wire))
		}
	}
}

// lookupMethod finds a served method by its wire name or, when alt is true,
// by xapi's alternative name Class_message (e.g. event_from).
func lookupMethod(wire string, alt bool) *method {
	methodsOnce.Do(buildMethods)
	if m, ok := methods[wire]; ok {
		return m
	}
	if !alt || strings.Contains(wire, ".") {
		return nil
	}
	for name := range model {
		if rest, ok := strings.CutPrefix(wire, name+"_"); ok {
			if m, ok := methods[name+"."+rest]; ok {
				return m
			}
		}
	}
	return nil
}

// listMethods is system.listMethods: every served synchronous wire name.
func listMethods() []any {
	methodsOnce.Do(buildMethods)
	names := make([]string, 0, len(methods))
	for n := range methods {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = n
	}
	return out
}

// MethodSignature describes a served method for the conformance check.
type MethodSignature struct {
	Name   string   `json:"name"`
	Params []string `json:"params"` // types, session included
	Result string   `json:"result"`
	Async  bool     `json:"async"`
}

// Signatures lists every served method with its parameter and result types.
func Signatures() []MethodSignature {
	methodsOnce.Do(buildMethods)
	out := make([]MethodSignature, 0, len(methods))
	for _, m := range methods {
		sig := MethodSignature{Name: m.wire, Result: m.result.String(), Async: m.async}
		if m.session {
			sig.Params = append(sig.Params, "session ref")
		}
		for _, p := range m.params {
			sig.Params = append(sig.Params, p.typ.String())
		}
		out = append(out, sig)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// plainSetter tells whether an explicit message is a plain field setter,
// set_<field>(self, value), such as VM.set_actions_after_crash.
func plainSetter(ci *classInfo, msg *message) bool {
	fname, ok := strings.CutPrefix(msg.name, "set_")
	if !ok || len(msg.params) != 3 {
		return false
	}
	f, ok := ci.field(fname)
	return ok && f.typ.text == msg.params[2].typ.text
}

// implicitHandler serves the messages xapi generates for every class: field
// getters and setters, map and set mutators, get_record, get_all,
// get_all_records, get_all_records_where, get_all_where, get_by_uuid and
// get_by_name_label.
func implicitHandler(ci *classInfo, name string) (func(*callCtx) (any, error), bool) {
	class := ci.name
	switch name {
	case "get_all":
		return func(c *callCtx) (any, error) {
			objs := c.s.db.all(class)
			out := make([]any, len(objs))
			for i, o := range objs {
				out[i] = o.ref
			}
			return out, nil
		}, false
	case "get_all_records":
		return func(c *callCtx) (any, error) {
			out := map[string]any{}
			for _, o := range c.s.db.objects[class] {
				out[o.ref] = recordOf(o)
			}
			return out, nil
		}, false
	case "get_all_records_where":
		return func(c *callCtx) (any, error) {
			objs, err := c.s.db.where(class, c.str(0))
			if err != nil {
				return nil, err
			}
			out := make(map[string]any, len(objs))
			for _, o := range objs {
				out[o.ref] = recordOf(o)
			}
			return out, nil
		}, false
	case "get_all_where":
		return func(c *callCtx) (any, error) {
			objs, err := c.s.db.where(class, c.str(0))
			if err != nil {
				return nil, err
			}
			out := make([]any, len(objs))
			for i, o := range objs {
				out[i] = o.ref
			}
			return out, nil
		}, false
	case "get_record":
		return func(c *callCtx) (any, error) {
			o, err := c.s.db.mustGet(class, c.str(0))
			if err != nil {
				return nil, err
			}
			return recordOf(o), nil
		}, false
	case "get_by_uuid":
		return func(c *callCtx) (any, error) {
			o, ok := c.s.db.byUUID[c.str(0)]
			if !ok || o.class != ci {
				return nil, newFailure(errUUIDInvalid, class, c.str(0))
			}
			return o.ref, nil
		}, false
	case "get_by_name_label":
		return func(c *callCtx) (any, error) {
			out := []any{}
			for _, o := range c.s.db.all(class) {
				if o.str("name_label") == c.str(0) {
					out = append(out, o.ref)
				}
			}
			return out, nil
		}, false
	}
	for _, prefix := range []string{"get_", "set_", "add_to_", "remove_from_", "add_", "remove_"} {
		fname, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		f, ok := ci.field(fname)
		if !ok {
			continue
		}
		switch prefix {
		case "get_":
			return func(c *callCtx) (any, error) {
				o, err := c.s.db.mustGet(class, c.str(0))
				if err != nil {
					return nil, err
				}
				return copyValue(o.fields[fname]), nil
			}, false
		case "set_":
			return func(c *callCtx) (any, error) {
				o, err := c.s.db.mustGet(class, c.str(0))
				if err != nil {
					return nil, err
				}
				c.s.db.update(o, fname, c.args[1])
				return nil, nil
			}, true
		case "add_to_":
			if f.typ.kind != kMap {
				continue
			}
			return func(c *callCtx) (any, error) {
				o, err := c.s.db.mustGet(class, c.str(0))
				if err != nil {
					return nil, err
				}
				key := fmt.Sprint(c.args[1])
				m := o.strMap(fname)
				if _, dup := m[key]; dup {
					return nil, newFailure(errMapDuplicateKey, class, fname, o.ref, key)
				}
				m[key] = c.args[2]
				c.s.db.touch(o)
				return nil, nil
			}, true
		case "remove_from_":
			if f.typ.kind != kMap {
				continue
			}
			return func(c *callCtx) (any, error) {
				o, err := c.s.db.mustGet(class, c.str(0))
				if err != nil {
					return nil, err
				}
				delete(o.strMap(fname), fmt.Sprint(c.args[1]))
				c.s.db.touch(o)
				return nil, nil
			}, true
		case "add_", "remove_":
			if f.typ.kind != kSet {
				continue
			}
			add := prefix == "add_"
			return func(c *callCtx) (any, error) {
				o, err := c.s.db.mustGet(class, c.str(0))
				if err != nil {
					return nil, err
				}
				out := []any{}
				found := false
				for _, e := range o.set(fname) {
					if e == c.args[1] {
						found = true
						if !add {
							continue
						}
					}
					out = append(out, e)
				}
				if add && !found {
					out = append(out, c.args[1])
				}
				c.s.db.update(o, fname, out)
				return nil, nil
			}, true
		}
	}
	return nil, false
}
