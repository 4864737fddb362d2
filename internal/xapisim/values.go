package xapisim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Values inside the simulator are plain Go values whose Go type decides the
// wire encoding, exactly as xapi's ocaml-rpc does with its Rpc.t:
//
//	string           untyped <value>s</value> (strings, refs, enums, uuids)
//	int64            untyped <value>123</value> (xapi's 64-bit ints)
//	int32            <value><i4>123</i4></value> (only event.from's valid_ref_counts)
//	float64          <value><double>%.16g</double></value>
//	bool             <value><boolean>1</boolean></value>
//	time.Time        <value><dateTime.iso8601>20250319T04:16:24Z</dateTime.iso8601></value>
//	[]any            <array>
//	map[string]any   <struct> with members in key order
//	record           <struct> with members in datamodel field order

// record is an ordered struct: an object's fields in datamodel order.
type record struct {
	names  []string
	values []any
}

func (r *record) add(name string, v any) {
	r.names = append(r.names, name)
	r.values = append(r.values, v)
}

// xapiTimeLayout is xapi's datetime format.
const xapiTimeLayout = "20060102T15:04:05Z"

var epoch = time.Unix(0, 0).UTC()

// appendXMLString escapes as ocaml-rpc does: only > < & " are escaped, and
// control characters other than TAB, LF and CR are dropped.
func appendXMLString(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '<':
			b.WriteString("&lt;")
		case c == '>':
			b.WriteString("&gt;")
		case c == '&':
			b.WriteString("&amp;")
		case c == '"':
			b.WriteString("&quot;")
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
		default:
			b.WriteByte(c)
		}
	}
}

// formatDouble formats as C's %.16g, as ocaml-rpc does.
func formatDouble(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	return strconv.FormatFloat(f, 'g', 16, 64)
}

// writeXMLValue appends v as an XML-RPC <value>.
func writeXMLValue(b *bytes.Buffer, v any) {
	b.WriteString("<value>")
	switch x := v.(type) {
	case nil:
	case string:
		appendXMLString(b, x)
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case int32:
		b.WriteString("<i4>")
		b.WriteString(strconv.FormatInt(int64(x), 10))
		b.WriteString("</i4>")
	case float64:
		b.WriteString("<double>")
		b.WriteString(formatDouble(x))
		b.WriteString("</double>")
	case bool:
		if x {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case time.Time:
		b.WriteString("<dateTime.iso8601>")
		b.WriteString(x.UTC().Format(xapiTimeLayout))
		b.WriteString("</dateTime.iso8601>")
	case []any:
		b.WriteString("<array><data>")
		for _, e := range x {
			writeXMLValue(b, e)
		}
		b.WriteString("</data></array>")
	case map[string]any:
		b.WriteString("<struct>")
		for _, k := range sortedKeys(x) {
			b.WriteString("<member><name>")
			b.WriteString(k) // ocaml-rpc does not escape member names
			b.WriteString("</name>")
			writeXMLValue(b, x[k])
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	case *record:
		b.WriteString("<struct>")
		for i, k := range x.names {
			b.WriteString("<member><name>")
			b.WriteString(k)
			b.WriteString("</name>")
			writeXMLValue(b, x.values[i])
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	default:
		panic(fmt.Sprintf("xapisim: cannot encode %T", v))
	}
	b.WriteString("</value>")
}

// xmlValueText is the XML-RPC text of v, as xapi stores it in task.result.
func xmlValueText(v any) string {
	var b bytes.Buffer
	writeXMLValue(&b, v)
	return b.String()
}

// toJSON converts v into what encoding/json writes as xapi's JSON-RPC does.
func toJSON(v any) any {
	switch x := v.(type) {
	case nil, string, int64, int32, bool:
		return x
	case float64:
		return x
	case time.Time:
		return x.UTC().Format(xapiTimeLayout)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toJSON(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = toJSON(e)
		}
		return out
	case *record:
		return orderedJSON{x}
	default:
		panic(fmt.Sprintf("xapisim: cannot encode %T", v))
	}
}

// orderedJSON writes a record's fields in datamodel order.
type orderedJSON struct{ r *record }

func (o orderedJSON) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.r.names {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(toJSON(o.r.values[i]))
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// zeroValue is the value of a field of type t that was never set.
func zeroValue(t *xtype) any {
	switch t.kind {
	case kString:
		return ""
	case kInt:
		return int64(0)
	case kFloat:
		return float64(0)
	case kBool:
		return false
	case kDateTime:
		return epoch
	case kRef:
		return nullRef
	case kEnum:
		return datamodelEnums[t.name][0]
	case kSet:
		return []any{}
	case kMap:
		return map[string]any{}
	default:
		panic(fmt.Sprintf("xapisim: no zero value for %s", t))
	}
}

// Input values decoded from a request, before they are converted to the
// declared parameter type: string (untyped or <string>), xmlInt (<int>,
// <i4>, <i8>), float64, bool, xmlDate, []any, map[string]any, json.Number.
type xmlInt int64

type xmlDate string

// convert turns a decoded input value into the Go value of type t, accepting
// what xapi accepts (ints as ints or decimal strings, enums in any case).
func convert(t *xtype, v any) (any, error) {
	switch t.kind {
	case kString, kRef:
		s, ok := v.(string)
		if !ok {
			return nil, typeError(t, v)
		}
		if !utf8.ValidString(s) {
			return nil, newFailure(errInvalidValue, "Invalid UTF-8 string in parameter", s)
		}
		return s, nil
	case kInt:
		switch x := v.(type) {
		case xmlInt:
			return int64(x), nil
		case json.Number:
			if i, err := x.Int64(); err == nil {
				return i, nil
			}
		case string:
			if i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
				return i, nil
			}
		}
		return nil, typeError(t, v)
	case kFloat:
		switch x := v.(type) {
		case float64:
			return x, nil
		case xmlInt:
			return float64(x), nil
		case json.Number:
			if f, err := x.Float64(); err == nil {
				return f, nil
			}
		case string:
			if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
				return f, nil
			}
		}
		return nil, typeError(t, v)
	case kBool:
		b, ok := v.(bool)
		if !ok {
			return nil, typeError(t, v)
		}
		return b, nil
	case kDateTime:
		var s string
		switch x := v.(type) {
		case xmlDate:
			s = string(x)
		case string:
			s = x
		default:
			return nil, typeError(t, v)
		}
		for _, layout := range []string{xapiTimeLayout, "20060102T15:04:05", time.RFC3339, "2006-01-02T15:04:05"} {
			if d, err := time.Parse(layout, s); err == nil {
				return d.UTC(), nil
			}
		}
		return nil, typeError(t, v)
	case kEnum:
		s, ok := v.(string)
		if !ok {
			return nil, typeError(t, v)
		}
		for _, e := range datamodelEnums[t.name] {
			if strings.EqualFold(e, s) {
				return e, nil
			}
		}
		return nil, newFailure(errInternalError, fmt.Sprintf("Unknown value %q for enum %s", s, t.name))
	case kSet:
		arr, ok := v.([]any)
		if !ok {
			return nil, typeError(t, v)
		}
		out := make([]any, 0, len(arr))
		for _, e := range arr {
			c, err := convert(t.elem, e)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	case kMap:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, typeError(t, v)
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			key, err := convert(t.key, k)
			if err != nil {
				return nil, err
			}
			c, err := convert(t.elem, e)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(key)] = c
		}
		return out, nil
	case kRecord:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, typeError(t, v)
		}
		return ctorRecord(model[t.name], m)
	}
	return nil, typeError(t, v)
}

func typeError(t *xtype, v any) error {
	return newFailure(errInternalError, fmt.Sprintf("Expected %s, got '%v'", t, v))
}

// ctorRecord reads the struct a constructor (Class.create) is given as the
// server xapi generates does (gen_server.ml from_ctor_record): it looks up
// each field a constructor takes (RW or RO/constructor), in datamodel
// order; a missing one takes its datamodel default, and a missing one
// without a default fails with Server_helpers.Dispatcher_FieldNotFound,
// which exnHelper.ml reports as an INTERNAL_ERROR. Other members are
// ignored, whatever their type.
func ctorRecord(ci *classInfo, m map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for _, f := range ci.fields {
		if !f.ctor {
			continue
		}
		e, ok := m[f.name]
		if !ok {
			if !f.hasDefault {
				return nil, newFailure(errInternalError, fmt.Sprintf("Server_helpers.Dispatcher_FieldNotFound(%q)", f.name))
			}
			out[f.name] = copyValue(f.def)
			continue
		}
		c, err := convert(f.typ, e)
		if err != nil {
			return nil, err
		}
		out[f.name] = c
	}
	return out, nil
}
