package xapisim

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// xmlCall is a decoded XML-RPC methodCall.
type xmlCall struct {
	method string
	params []any
}

// parseXMLCall decodes an XML-RPC methodCall as ocaml-rpc does: untyped
// values and <string> are strings, <int>/<i4>/<i8> ints, <value/> the empty
// string, <nil/> nil.
func parseXMLCall(body []byte) (*xmlCall, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	call := &xmlCall{}
	seenCall := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch se.Name.Local {
		case "methodCall":
			seenCall = true
		case "methodName":
			var name string
			if err := d.DecodeElement(&name, &se); err != nil {
				return nil, err
			}
			call.method = strings.TrimSpace(name)
		case "value":
			v, err := parseXMLValue(d)
			if err != nil {
				return nil, err
			}
			call.params = append(call.params, v)
		}
	}
	if !seenCall || call.method == "" {
		return nil, errors.New("not an XML-RPC methodCall")
	}
	return call, nil
}

// parseXMLValue decodes the inside of a <value> whose start tag was read.
func parseXMLValue(d *xml.Decoder) (any, error) {
	var text strings.Builder
	var result any
	typed := false
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if !typed {
				text.Write(t)
			}
		case xml.EndElement:
			if !typed {
				return text.String(), nil
			}
			return result, nil
		case xml.StartElement:
			typed = true
			result, err = parseTypedValue(d, t)
			if err != nil {
				return nil, err
			}
		}
	}
}

func parseTypedValue(d *xml.Decoder, se xml.StartElement) (any, error) {
	switch se.Name.Local {
	case "string", "base64":
		var s string
		err := d.DecodeElement(&s, &se)
		return s, err
	case "int", "i4", "i8":
		var s string
		if err := d.DecodeElement(&s, &se); err != nil {
			return nil, err
		}
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		return xmlInt(i), err
	case "boolean":
		var s string
		if err := d.DecodeElement(&s, &se); err != nil {
			return nil, err
		}
		switch strings.TrimSpace(s) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, fmt.Errorf("bad boolean %q", s)
	case "double":
		var s string
		if err := d.DecodeElement(&s, &se); err != nil {
			return nil, err
		}
		return strconv.ParseFloat(strings.TrimSpace(s), 64)
	case "dateTime.iso8601":
		var s string
		err := d.DecodeElement(&s, &se)
		return xmlDate(strings.TrimSpace(s)), err
	case "nil":
		return nil, d.Skip()
	case "array":
		arr := []any{}
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			switch t := tok.(type) {
			case xml.StartElement:
				if t.Name.Local == "value" {
					v, err := parseXMLValue(d)
					if err != nil {
						return nil, err
					}
					arr = append(arr, v)
				}
			case xml.EndElement:
				if t.Name.Local == "array" {
					return arr, nil
				}
			}
		}
	case "struct":
		m := map[string]any{}
		var name string
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			switch t := tok.(type) {
			case xml.StartElement:
				switch t.Name.Local {
				case "name":
					if err := d.DecodeElement(&name, &t); err != nil {
						return nil, err
					}
				case "value":
					v, err := parseXMLValue(d)
					if err != nil {
						return nil, err
					}
					m[name] = v
				}
			case xml.EndElement:
				if t.Name.Local == "struct" {
					return m, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("unknown XML-RPC type <%s>", se.Name.Local)
}

// xmlResponse renders xapi's Status/Value/ErrorDescription envelope.
func xmlResponse(value any, fail *Failure) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?><methodResponse><params><param><value><struct>`)
	if fail == nil {
		b.WriteString("<member><name>Status</name><value>Success</value></member><member><name>Value</name>")
		writeXMLValue(&b, value)
		b.WriteString("</member>")
	} else {
		b.WriteString("<member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name>")
		writeXMLValue(&b, fail.description())
		b.WriteString("</member>")
	}
	b.WriteString("</struct></value></param></params></methodResponse>")
	return b.Bytes()
}

// xmlBareResponse renders a response without the envelope (system.listMethods).
func xmlBareResponse(value any) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?><methodResponse><params><param>`)
	writeXMLValue(&b, value)
	b.WriteString("</param></params></methodResponse>")
	return b.Bytes()
}

// jsonCall is a decoded JSON-RPC request, v1 or v2.
type jsonCall struct {
	Version string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  []any           `json:"params"`
	ID      json.RawMessage `json:"id"`
}

func parseJSONCall(body []byte) (*jsonCall, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var c jsonCall
	if err := d.Decode(&c); err != nil {
		return nil, err
	}
	if c.Method == "" {
		return nil, errors.New("missing method")
	}
	id := strings.TrimSpace(string(c.ID))
	if id == "" || id == "null" || (id[0] != '"' && id[0] != '-' && (id[0] < '0' || id[0] > '9')) {
		return nil, errors.New("id must be a string or an integer")
	}
	return &c, nil
}

// jsonResponse renders a JSON-RPC v1 or v2 response as xapi does.
func jsonResponse(c *jsonCall, value any, fail *Failure) []byte {
	var out any
	if c.Version == "2.0" {
		if fail == nil {
			out = struct {
				JSONRPC string          `json:"jsonrpc"`
				Result  any             `json:"result"`
				ID      json.RawMessage `json:"id"`
			}{"2.0", toJSON(value), c.ID}
		} else {
			params := make([]string, len(fail.Params))
			copy(params, fail.Params)
			out = struct {
				JSONRPC string          `json:"jsonrpc"`
				Error   any             `json:"error"`
				ID      json.RawMessage `json:"id"`
			}{"2.0", struct {
				Code    int      `json:"code"`
				Message string   `json:"message"`
				Data    []string `json:"data"`
			}{1, fail.Code, params}, c.ID}
		}
	} else {
		var errv any
		var result any
		if fail == nil {
			result = toJSON(value)
		} else {
			errv = toJSON(fail.description())
		}
		out = struct {
			Result any             `json:"result"`
			Error  any             `json:"error"`
			ID     json.RawMessage `json:"id"`
		}{result, errv, c.ID}
	}
	b, err := json.Marshal(out)
	if err != nil {
		panic(err)
	}
	return b
}
