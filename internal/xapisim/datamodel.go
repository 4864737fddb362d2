package xapisim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// dmClass, dmField, dmMessage and dmParam are the shapes of the generated
// datamodel tables (zz_generated.datamodel.go).
type dmClass struct {
	Name     string
	Fields   []dmField
	Messages []dmMessage
}

type dmField struct {
	Name string
	Type string
	RW   bool
	// Ctor tells whether a constructor (Class.create) takes the field: it
	// is RW or RO/constructor.
	Ctor bool
	// Default is the datamodel's default value, in its notation
	// ("false", `"()"`, `{"address" -> "localhost"}`, "OpaqueRef:NULL"),
	// or "" when it declares none.
	Default string
}

type dmMessage struct {
	Name     string
	Result   string
	Implicit bool
	// Removed marks a message removed from the API.
	Removed bool
	Params  []dmParam
}

type dmParam struct {
	Name string
	Type string
}

// kind is the shape of a XenAPI type.
type kind int

const (
	kVoid kind = iota
	kString
	kInt
	kFloat
	kBool
	kDateTime
	kRef
	kEnum
	kSet
	kMap
	kRecord
	// kOpaque is a type the datamodel describes in prose, such as
	// event.from's "an event batch"; its handler builds the value itself.
	kOpaque
)

// xtype is a parsed XenAPI type such as "(string -> VM ref) map".
type xtype struct {
	kind kind
	name string // class of a ref or record, name of an enum
	key  *xtype // map key
	elem *xtype // set element, map value
	text string // the type as the datamodel writes it
}

func (t *xtype) String() string { return t.text }

// parseType parses a datamodel type string.
func parseType(s string) (*xtype, error) {
	t := &xtype{text: s}
	switch {
	case s == "void":
		t.kind = kVoid
	case s == "string":
		t.kind = kString
	case s == "int":
		t.kind = kInt
	case s == "float":
		t.kind = kFloat
	case s == "bool":
		t.kind = kBool
	case s == "datetime":
		t.kind = kDateTime
	case strings.HasPrefix(s, "(") && strings.HasSuffix(s, ") map"):
		inner := strings.TrimSuffix(strings.TrimPrefix(s, "("), ") map")
		k, v, ok := strings.Cut(inner, " -> ")
		if !ok {
			return nil, fmt.Errorf("bad map type %q", s)
		}
		key, err := parseType(k)
		if err != nil {
			return nil, err
		}
		val, err := parseType(v)
		if err != nil {
			return nil, err
		}
		t.kind, t.key, t.elem = kMap, key, val
	case strings.HasSuffix(s, " set"):
		elem, err := parseType(strings.TrimSuffix(s, " set"))
		if err != nil {
			return nil, err
		}
		t.kind, t.elem = kSet, elem
	case strings.HasSuffix(s, " ref"):
		t.kind, t.name = kRef, strings.TrimSuffix(s, " ref")
	case strings.HasSuffix(s, " record"):
		t.kind, t.name = kRecord, strings.TrimSuffix(s, " record")
	case strings.HasPrefix(s, "enum "):
		t.kind, t.name = kEnum, strings.TrimPrefix(s, "enum ")
		if _, ok := datamodelEnums[t.name]; !ok {
			return nil, fmt.Errorf("unknown enum %q", t.name)
		}
	default:
		t.kind = kOpaque
	}
	return t, nil
}

func mustParseType(s string) *xtype {
	t, err := parseType(s)
	if err != nil {
		panic(err)
	}
	return t
}

// field is a class field with its parsed type and the value a new object
// gets when its creator gives none: the datamodel's default, else the
// type's zero value.
type field struct {
	name string
	typ  *xtype
	rw   bool
	def  any
	// ctor tells whether Class.create takes the field; hasDefault whether
	// the datamodel gives it a default, which a constructor record may then
	// leave out.
	ctor, hasDefault bool
}

// message is a class message with parsed parameter and result types.
type message struct {
	class    string
	name     string
	wire     string // Class.message
	params   []param
	result   *xtype
	implicit bool
	removed  bool
}

type param struct {
	name string
	typ  *xtype
}

// classInfo is the datamodel of one class.
type classInfo struct {
	name     string
	fields   []field
	fieldIdx map[string]int
	// columns maps database column names (name__label) to fields, for
	// get_all_records_where expressions.
	columns  map[string]field
	messages map[string]*message
	// events tells whether event.from reports changes to objects of the class.
	events bool
}

func (c *classInfo) field(name string) (field, bool) {
	i, ok := c.fieldIdx[name]
	if !ok {
		return field{}, false
	}
	return c.fields[i], true
}

// model is the parsed datamodel of every class the simulator serves.
var model = func() map[string]*classInfo {
	m := map[string]*classInfo{}
	for _, dc := range datamodelClasses {
		ci := &classInfo{
			name:     dc.Name,
			fieldIdx: map[string]int{},
			columns:  map[string]field{},
			messages: map[string]*message{},
			events:   dc.Name != "session" && dc.Name != "event",
		}
		for _, f := range dc.Fields {
			ci.fieldIdx[f.Name] = len(ci.fields)
			t := mustParseType(f.Type)
			ci.fields = append(ci.fields, field{name: f.Name, typ: t, rw: f.RW, def: mustParseDefault(t, f.Default),
				ctor: f.Ctor, hasDefault: f.Default != ""})
			ci.columns[dbColumn(dc.Name, f.Name)] = ci.fields[len(ci.fields)-1]
		}
		for _, dm := range dc.Messages {
			msg := &message{class: dc.Name, name: dm.Name, wire: dc.Name + "." + dm.Name, implicit: dm.Implicit,
				removed: dm.Removed}
			msg.result = mustParseType(dm.Result)
			for _, p := range dm.Params {
				msg.params = append(msg.params, param{name: p.Name, typ: mustParseType(p.Type)})
			}
			ci.messages[dm.Name] = msg
		}
		m[dc.Name] = ci
	}
	return m
}()

// lowerClass maps lower-case class names to the datamodel's spelling.
var lowerClass = func() map[string]string {
	m := map[string]string{}
	for name := range model {
		m[strings.ToLower(name)] = name
	}
	return m
}()

// relation is a one-to-many relation of xapi's database: the set field
// setField of class target lists the objects whose field field names it.
// The database keeps the set in step with the field (datamodel.ml
// all_relations).
type relation struct {
	field, target, setField string
}

// relations maps a class to its relation fields, for the modelled classes
// (task.session, which the datamodel does not publish, is kept by the task
// code; PIF.VLAN_master_of, a single ref, by the VLAN code).
var relations = func() map[string][]relation {
	all := []struct{ class, field, target, setField string }{
		{"VM", "snapshot_of", "VM", "snapshots"},
		{"VDI", "snapshot_of", "VDI", "snapshots"},
		{"VM", "parent", "VM", "children"},
		{"task", "subtask_of", "task", "subtasks"},
		{"PBD", "host", "host", "PBDs"},
		{"PBD", "SR", "SR", "PBDs"},
		{"VBD", "VDI", "VDI", "VBDs"},
		{"VBD", "VM", "VM", "VBDs"},
		{"VIF", "VM", "VM", "VIFs"},
		{"VIF", "network", "network", "VIFs"},
		{"PIF", "host", "host", "PIFs"},
		{"PIF", "network", "network", "PIFs"},
		{"VLAN", "tagged_PIF", "PIF", "VLAN_slave_of"},
		{"VDI", "SR", "SR", "VDIs"},
		{"VM", "resident_on", "host", "resident_VMs"},
		{"host_cpu", "host", "host", "host_CPUs"},
	}
	m := map[string][]relation{}
	for _, r := range all {
		m[r.class] = append(m[r.class], relation{field: r.field, target: r.target, setField: r.setField})
	}
	return m
}()

// mustParseDefault reads a datamodel default value (gen_json.ml writes them
// as Datamodel_values does: strings quoted, sets {a, b}, maps
// {"k" -> "v"}, "Null" for a null ref, floats as "1."). With no default it
// is the zero value of the type.
func mustParseDefault(t *xtype, s string) any {
	if t.kind == kRecord || t.kind == kOpaque {
		return nil // only the event class has such fields; it has no objects
	}
	if s == "" {
		return zeroValue(t)
	}
	v, err := parseDefault(t, s)
	if err != nil {
		panic(fmt.Sprintf("xapisim: default %q of type %s: %v", s, t, err))
	}
	return v
}

func parseDefault(t *xtype, s string) (any, error) {
	s = strings.TrimSpace(s)
	switch t.kind {
	case kString:
		return strconv.Unquote(s)
	case kInt:
		return strconv.ParseInt(s, 10, 64)
	case kFloat:
		return strconv.ParseFloat(strings.TrimSuffix(s, "."), 64)
	case kBool:
		return strconv.ParseBool(s)
	case kDateTime:
		return time.Parse(xapiTimeLayout, s)
	case kRef:
		if s == "Null" {
			return nullRef, nil
		}
		return s, nil
	case kEnum:
		for _, v := range datamodelEnums[t.name] {
			if v == s {
				return s, nil
			}
		}
		return nil, fmt.Errorf("not a value of %s", t.name)
	case kSet, kMap:
		inner, okOpen := strings.CutPrefix(s, "{")
		inner, okClose := strings.CutSuffix(inner, "}")
		if !okOpen || !okClose {
			return nil, errors.New("not in braces")
		}
		set, m := []any{}, map[string]any{}
		if strings.TrimSpace(inner) != "" {
			for _, item := range strings.Split(inner, ",") {
				if t.kind == kSet {
					v, err := parseDefault(t.elem, item)
					if err != nil {
						return nil, err
					}
					set = append(set, v)
					continue
				}
				k, v, ok := strings.Cut(item, "->")
				if !ok {
					return nil, errors.New("map entry without ->")
				}
				key, err := parseDefault(t.key, k)
				if err != nil {
					return nil, err
				}
				val, err := parseDefault(t.elem, v)
				if err != nil {
					return nil, err
				}
				m[fmt.Sprint(key)] = val
			}
		}
		if t.kind == kSet {
			return set, nil
		}
		return m, nil
	}
	return nil, errors.New("no default for this type")
}
