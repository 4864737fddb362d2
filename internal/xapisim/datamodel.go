package xapisim

import (
	"fmt"
	"strings"
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
}

type dmMessage struct {
	Name     string
	Result   string
	Implicit bool
	Params   []dmParam
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

// field is a class field with its parsed type.
type field struct {
	name string
	typ  *xtype
	rw   bool
}

// message is a class message with parsed parameter and result types.
type message struct {
	class    string
	name     string
	wire     string // Class.message
	params   []param
	result   *xtype
	implicit bool
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
			messages: map[string]*message{},
			events:   dc.Name != "session" && dc.Name != "event",
		}
		for _, f := range dc.Fields {
			ci.fieldIdx[f.Name] = len(ci.fields)
			ci.fields = append(ci.fields, field{name: f.Name, typ: mustParseType(f.Type), rw: f.RW})
		}
		for _, dm := range dc.Messages {
			msg := &message{class: dc.Name, name: dm.Name, wire: dc.Name + "." + dm.Name, implicit: dm.Implicit}
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
