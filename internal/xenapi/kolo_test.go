package xenapi

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"

	"github.com/kolo/xmlrpc"
)

// The decoding of responses as it was before decode.go: kolo on the whole
// body after rewriting its empty values, and for event.from a second parse
// cutting out each snapshot and a third decoding each. It stays here as the
// reference the streaming decoder is compared with.

// envelope is xapi's Status/Value/ErrorDescription response.
type envelope[T any] struct {
	Status           string   `xmlrpc:"Status"`
	Value            T        `xmlrpc:"Value"`
	ErrorDescription []string `xmlrpc:"ErrorDescription"`
}

// emptyValue fixes kolo's handling of xapi's empty strings: an untyped
// <value></value> (or <value/>) makes it skip the rest of the enclosing
// struct or array without an error. A typed empty string decodes correctly.
var (
	emptyValue      = []byte("<value></value>")
	emptySelfClosed = []byte("<value/>")
	emptyTyped      = []byte("<value><string></string></value>")
)

func fixEmptyValues(body []byte) []byte {
	body = bytes.ReplaceAll(body, emptyValue, emptyTyped)
	return bytes.ReplaceAll(body, emptySelfClosed, emptyTyped)
}

// koloResponse is what callBody did with a 200 response's body.
func koloResponse[T any](r *rpc, method string, raw []byte) (T, string, error) {
	var zero T
	var env envelope[T]
	if err := xmlrpc.Response(fixEmptyValues(raw)).Unmarshal(&env); err != nil {
		return zero, "DECODE", &ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("%s: decoding the response: %w", method, err)}
	}
	switch env.Status {
	case "Success":
		return env.Value, "SUCCESS", nil
	case "Failure":
		xe := &Error{Method: method}
		if len(env.ErrorDescription) > 0 {
			xe.Code, xe.Params = env.ErrorDescription[0], env.ErrorDescription[1:]
		}
		return zero, xe.Code, xe
	default:
		return zero, "DECODE", &ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("%s: response without a Status", method)}
	}
}

func koloValueText[T any](text string) (T, error) {
	var out struct {
		V T
	}
	doc := `<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>V</name>` +
		text + `</member></struct></value></param></params></methodResponse>`
	err := xmlrpc.Response(fixEmptyValues([]byte(doc))).Unmarshal(&out)
	return out.V, err
}

type eventWire struct {
	ID        string `xmlrpc:"id"`
	Class     string `xmlrpc:"class"`
	Operation string `xmlrpc:"operation"`
	Ref       string `xmlrpc:"ref"`
}

type eventBatchWire struct {
	Events         []eventWire    `xmlrpc:"events"`
	ValidRefCounts map[string]int `xmlrpc:"valid_ref_counts"`
	Token          string         `xmlrpc:"token"`
}

func koloDecoder[W, R any](record func(*W, string) *R) func(raw, ref string) (any, error) {
	return func(raw, ref string) (any, error) {
		w, err := koloValueText[W](raw)
		if err != nil {
			return nil, err
		}
		return record(&w, ref), nil
	}
}

var koloDecoders = map[string]func(raw, ref string) (any, error){
	ClassVM:           koloDecoder((*vmWire).record),
	ClassHost:         koloDecoder((*hostWire).record),
	ClassTask:         koloDecoder((*taskWire).record),
	ClassGuestMetrics: koloDecoder((*guestMetricsWire).record),
	ClassPool:         koloDecoder((*poolWire).record),
	ClassSR:           koloDecoder((*srWire).record),
	ClassPBD:          koloDecoder((*pbdWire).record),
	ClassVDI:          koloDecoder((*vdiWire).record),
	ClassVBD:          koloDecoder((*vbdWire).record),
	ClassVIF:          koloDecoder((*vifWire).record),
	ClassNetwork:      koloDecoder((*networkWire).record),
}

// koloEventFrom is what eventFrom did with a 200 response's body.
func koloEventFrom(r *rpc, body []byte) (*eventBatch, string, error) {
	wire, code, err := koloResponse[eventBatchWire](r, "event.from", body)
	if err != nil {
		return nil, code, err
	}
	snaps, err := snapshots(fixEmptyValues(body))
	if err != nil || len(snaps) != len(wire.Events) {
		return nil, code, &ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("event.from: cannot read the snapshots: %v", err)}
	}
	out := &eventBatch{token: wire.Token}
	for i, e := range wire.Events {
		ev := Event{Class: e.Class, Op: EventOp(e.Operation), Ref: e.Ref}
		if decode := koloDecoders[e.Class]; decode != nil && ev.Op != OpDel && snaps[i] != nil {
			if ev.Object, err = decode(string(snaps[i]), e.Ref); err != nil {
				return nil, code, &ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("event.from: %s %s: %w", e.Class, e.Ref, err)}
			}
		}
		out.events = append(out.events, ev)
	}
	return out, code, nil
}

// snapshots returns, for each event of an event.from response in order, the
// raw XML of its snapshot <value> (nil for a del). kolo cannot decode a
// struct whose type depends on a sibling member, so the snapshots are cut
// out and decoded one by one into the record of their class.
func snapshots(body []byte) ([][]byte, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	next := func() (xml.Token, error) {
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			if cd, ok := tok.(xml.CharData); ok && len(bytes.TrimSpace(cd)) == 0 {
				continue
			}
			return tok, nil
		}
	}
	expectStart := func(name string) error {
		tok, err := next()
		if err != nil {
			return err
		}
		if se, ok := tok.(xml.StartElement); !ok || se.Name.Local != name {
			return fmt.Errorf("expected <%s>, got %v", name, tok)
		}
		return nil
	}
	// Find the "events" member of the Value struct.
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "name" {
			var name string
			if err := d.DecodeElement(&name, &se); err != nil {
				return nil, err
			}
			if name == "events" {
				break
			}
		}
	}
	for _, n := range []string{"value", "array", "data"} {
		if err := expectStart(n); err != nil {
			return nil, err
		}
	}
	var out [][]byte
	for {
		tok, err := next()
		if err != nil {
			return nil, err
		}
		if _, ok := tok.(xml.EndElement); ok { // </data>
			return out, nil
		}
		if err := expectStart("struct"); err != nil {
			return nil, err
		}
		var snap []byte
		for {
			tok, err := next()
			if err != nil {
				return nil, err
			}
			if _, ok := tok.(xml.EndElement); ok { // </struct>
				break
			}
			var name string
			tok, err = next()
			if err != nil {
				return nil, err
			}
			se, ok := tok.(xml.StartElement)
			if !ok || se.Name.Local != "name" {
				return nil, errors.New("expected <name>")
			}
			if err := d.DecodeElement(&name, &se); err != nil {
				return nil, err
			}
			start := d.InputOffset()
			if err := expectStart("value"); err != nil {
				return nil, err
			}
			if err := d.Skip(); err != nil {
				return nil, err
			}
			if name == "snapshot" {
				snap = bytes.TrimSpace(body[start:d.InputOffset()])
			}
			if _, err := next(); err != nil { // </member>
				return nil, err
			}
		}
		if _, err := next(); err != nil { // </value>
			return nil, err
		}
		out = append(out, snap)
	}
}
