package v1alpha1

import (
	stdjson "encoding/json"
	"fmt"
	"reflect"
	"strings"

	"sigs.k8s.io/json"
)

// A spec the API server stored but the manager cannot decode (a value that
// an older, looser version of the CRD let through, or an object written
// around the validation) must not stop the manager's informer: one bad item
// would make every list fail to decode, and reconciliation of every object
// of the kind would stop with it. The specs therefore decode leniently: a
// field whose value cannot be decoded is left at its zero value, and the
// object reports the fields in its status instead of acting on them.

// decodeLeniently decodes the JSON object data into the struct that v points
// to. When the whole object decodes, it behaves as json.Unmarshal. Otherwise
// it decodes field by field, leaves the fields that fail at their zero value,
// and returns a message naming them (prefix is the field path, e.g. "spec").
// An error is returned only when data is not a JSON object at all.
func decodeLeniently(data []byte, v any, prefix string) (string, error) {
	if err := json.UnmarshalCaseSensitivePreserveInts(data, v); err == nil {
		return "", nil
	}
	rv := reflect.ValueOf(v).Elem()
	rv.SetZero()
	var raw map[string]stdjson.RawMessage
	if err := json.UnmarshalCaseSensitivePreserveInts(data, &raw); err != nil {
		return "", err
	}
	var bad []string
	rt := rv.Type()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		msg, ok := raw[name]
		if name == "" || name == "-" || !ok || !rt.Field(i).IsExported() {
			continue
		}
		field := rv.Field(i)
		if err := json.UnmarshalCaseSensitivePreserveInts(msg, field.Addr().Interface()); err != nil {
			field.SetZero()
			bad = append(bad, fmt.Sprintf("%s.%s: %v", prefix, name, err))
		}
	}
	return strings.Join(bad, "; "), nil
}

// UnmarshalJSON decodes a XenVM spec leniently (see decodeLeniently).
func (s *XenVMSpec) UnmarshalJSON(data []byte) error {
	type plain XenVMSpec
	p := (*plain)(s)
	msg, err := decodeLeniently(data, p, "spec")
	s.decodeError = msg
	return err
}

// DecodeError names the spec's fields whose stored values could not be
// decoded, "" when every field decoded. Such a XenVM is not acted on.
func (s *XenVMSpec) DecodeError() string { return s.decodeError }

// UnmarshalJSON decodes a XenHost spec leniently (see decodeLeniently).
func (s *XenHostSpec) UnmarshalJSON(data []byte) error {
	type plain XenHostSpec
	p := (*plain)(s)
	msg, err := decodeLeniently(data, p, "spec")
	s.decodeError = msg
	return err
}

// DecodeError names the spec's fields whose stored values could not be
// decoded, "" when every field decoded. Such a XenHost is not connected.
func (s *XenHostSpec) DecodeError() string { return s.decodeError }
