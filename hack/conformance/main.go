// Command conformance checks the XenAPI simulator against xapi's datamodel
// (xenapi.json): every method it serves exists in the datamodel with the same
// parameter count and types (or is one of the implicit messages xapi serves
// but the datamodel's docs leave out, get_all_where and
// get_all_records_where, typed after the class's get_all_records), and every
// record it returns over XML-RPC, through get_all_records and
// get_all_records_where, has every field the datamodel lists for its class
// (fields removed from the API may be left out) with a value of the declared
// type; event.from counts the objects of every class of the datamodel that
// is a database table. Run by `make conformance`.
package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/xen-operator/xen-operator/internal/xapisim"
)

type dmField struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Lifecycle struct {
		State string `json:"state"`
	} `json:"lifecycle"`
}

type dmMessage struct {
	Name   string   `json:"name"`
	Result []string `json:"result"`
	Params []struct {
		Type string `json:"type"`
	} `json:"params"`
}

type dmClass struct {
	Name     string      `json:"name"`
	Fields   []dmField   `json:"fields"`
	Messages []dmMessage `json:"messages"`
	Enums    []struct {
		Name   string `json:"name"`
		Values []struct {
			Name string `json:"name"`
		} `json:"values"`
	} `json:"enums"`
}

var (
	classes = map[string]dmClass{}
	enums   = map[string]map[string]bool{}
	fails   []string
)

func failf(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }

func main() {
	path := flag.String("datamodel", "", "xapi's xenapi.json")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "conformance: --datamodel is required (XENAPI_DATAMODEL=path/to/xenapi.json)")
		os.Exit(2)
	}
	raw, err := os.ReadFile(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
	var all []dmClass
	if err := json.Unmarshal(raw, &all); err != nil {
		fmt.Fprintln(os.Stderr, "conformance: parsing the datamodel:", err)
		os.Exit(2)
	}
	for _, c := range all {
		classes[c.Name] = c
		for _, e := range c.Enums {
			enums[e.Name] = map[string]bool{}
			for _, v := range e.Values {
				enums[e.Name][v.Name] = true
			}
		}
	}

	sim, err := xapisim.New(xapisim.Config{Hosts: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance: starting the simulator:", err)
		os.Exit(1)
	}
	nMethods := checkMethods(sim.URL())
	nRecords, nClasses, nCounts := checkRecords(sim.URL())

	if len(fails) > 0 {
		sort.Strings(fails)
		for _, f := range fails {
			fmt.Println("FAIL:", f)
		}
		fmt.Printf("conformance: %d passed, %d failed\n", nMethods+nRecords+nCounts-len(fails), len(fails))
		sim.Close()
		os.Exit(1)
	}
	sim.Close()
	fmt.Printf("conformance: %d methods, %d records of %d classes and the valid_ref_counts of %d classes match the datamodel\n",
		nMethods, nRecords, nClasses, nCounts)
	fmt.Printf("%d passed, 0 failed\n", nMethods+nRecords+nCounts)
}

// checkMethods compares the served signatures with the datamodel's.
func checkMethods(url string) int {
	resp, err := http.Get(url + "/sim/methods")
	if err != nil {
		failf("GET /sim/methods: %v", err)
		return 0
	}
	defer func() { _ = resp.Body.Close() }()
	var sigs []xapisim.MethodSignature
	if err := json.NewDecoder(resp.Body).Decode(&sigs); err != nil {
		failf("decoding /sim/methods: %v", err)
		return 0
	}
	listed, _ := call(url, "system.listMethods")
	served := map[string]bool{}
	for _, v := range listed.arr {
		served[v.text] = true
	}
	for _, sig := range sigs {
		if !served[sig.Name] {
			failf("%s: served but missing from system.listMethods", sig.Name)
		}
		class, name, _ := strings.Cut(sig.Name, ".")
		var msg *dmMessage
		for i, m := range classes[class].Messages {
			if m.Name == name {
				msg = &classes[class].Messages[i]
			}
		}
		if msg == nil {
			msg = hiddenMessage(class, name)
		}
		if msg == nil {
			failf("%s: not in the datamodel", sig.Name)
			continue
		}
		var want []string
		for _, p := range msg.Params {
			want = append(want, p.Type)
		}
		if strings.Join(want, ", ") != strings.Join(sig.Params, ", ") {
			failf("%s: parameters (%s), datamodel (%s)", sig.Name, strings.Join(sig.Params, ", "), strings.Join(want, ", "))
		}
		result := "void"
		if len(msg.Result) > 0 {
			result = msg.Result[0]
		}
		if result != sig.Result {
			failf("%s: result %s, datamodel %s", sig.Name, sig.Result, result)
		}
	}
	return len(sigs)
}

// hiddenMessage is one of the implicit messages xapi adds to every class it
// exposes get_all for (datamodel_utils.ml add_implicit_messages:
// get_all_where and get_all_records_where, hidden from the docs and so from
// xenapi.json), with the types that follow from the class's get_all_records.
func hiddenMessage(class, name string) *dmMessage {
	var all *dmMessage
	for i, m := range classes[class].Messages {
		if m.Name == "get_all_records" {
			all = &classes[class].Messages[i]
		}
	}
	if all == nil || len(all.Params) != 1 {
		return nil
	}
	msg := &dmMessage{Name: name, Params: append(append(all.Params[:0:0], all.Params...), struct {
		Type string `json:"type"`
	}{Type: "string"})}
	switch name {
	case "get_all_where":
		msg.Result = []string{class + " ref set"}
	case "get_all_records_where":
		msg.Result = all.Result
	default:
		return nil
	}
	return msg
}

// notInDatabase are the datamodel's classes that are not database tables
// (in_db:false in xen-api ocaml/idl/datamodel.ml).
var notInDatabase = map[string]bool{
	"auth": true, "event": true, "data_source": true, "sr_stat": true, "probe_result": true,
	"vdi_nbd_server_info": true, "message": true,
}

// checkRefCounts checks that event.from's valid_ref_counts has an <i4> count
// for every table of the datamodel, and no other (xapi_event.ml from).
func checkRefCounts(v xv) int {
	counts := v.members["valid_ref_counts"]
	n := 0
	for name := range classes {
		n++
		c, ok := counts.members[strings.ToLower(name)]
		switch {
		case notInDatabase[name] && ok:
			failf("event.from valid_ref_counts: %s is not a table", name)
		case notInDatabase[name]:
		case !ok:
			failf("event.from valid_ref_counts: no count for table %s", name)
		case c.tag != "i4" || !intRE.MatchString(c.text):
			failf("event.from valid_ref_counts[%s]: <%s>%q, want an <i4>", name, c.tag, c.text)
		}
	}
	for name := range counts.members {
		found := false
		for class := range classes {
			found = found || strings.ToLower(class) == name
		}
		if !found {
			failf("event.from valid_ref_counts: %s is not a class of the datamodel", name)
		}
	}
	return n
}

// checkRecords populates the pool with one object of every class and checks
// every record get_all_records (or get_record) returns.
func checkRecords(url string) (nRecords, nClasses, nCounts int) {
	v, f := call(url, "session.login_with_password", "root", "xenserver", "1.0", "conformance")
	if f != nil {
		failf("login: %v", f)
		return 0, 0, 0
	}
	s := v.text
	must := func(method string, args ...any) xv {
		v, f := call(url, method, append([]any{s}, args...)...)
		if f != nil {
			failf("%s: %v", method, f)
		}
		return v
	}
	// A provisioned, running VM with a VIF brings VBDs, VDIs, VIFs and guest
	// metrics; an Async call brings a task.
	tmpl := must("VM.get_by_name_label", "Debian Bookworm 12").arr[0].text
	vm := must("VM.clone", tmpl, "conformance").text
	pool := must("pool.get_all").arr[0].text
	sr := must("SR.get_uuid", must("pool.get_default_SR", pool).text).text
	disks := must("VM.get_other_config", vm).members["disks"].text
	must("VM.remove_from_other_config", vm, "disks")
	must("VM.add_to_other_config", vm, "disks", strings.ReplaceAll(disks, `sr=""`, `sr="`+sr+`"`))
	must("VM.provision", vm)
	network := must("network.get_all").arr[0].text
	must("VIF.create", map[string]any{
		"device": "0", "network": network, "VM": vm, "MAC": "", "MTU": "1500", "other_config": map[string]any{},
		"qos_algorithm_type": "", "qos_algorithm_params": map[string]any{},
	})
	must("VM.start", vm, false, false)
	must("Async.host.compute_free_memory", must("host.get_all").arr[0].text)

	for _, class := range servedClasses() {
		var records map[string]xv
		switch {
		case class == "session":
			records = map[string]xv{s: must("session.get_record", s)}
		case hasMessage(class, "get_all_records"):
			records = must(class + ".get_all_records").members
		default:
			continue
		}
		if len(records) == 0 {
			failf("%s: no record to check", class)
			continue
		}
		nClasses++
		for ref, rec := range records {
			nRecords++
			checkRecord(class, ref, rec)
		}
		if class != "session" {
			nRecords += checkWhere(class, records, must)
		}
	}
	return nRecords, nClasses, checkRefCounts(must("event.from", []string{"pool"}, "", 0.0))
}

// checkWhere checks get_all_records_where and get_all_where against the
// class's records: "true" returns them all, a uuid match exactly one.
func checkWhere(class string, records map[string]xv, must func(string, ...any) xv) int {
	where := must(class+".get_all_records_where", "true").members
	if len(where) != len(records) {
		failf("%s.get_all_records_where true: %d records, get_all_records %d", class, len(where), len(records))
	}
	n := 0
	for ref, rec := range where {
		n++
		checkRecord(class, ref, rec)
	}
	for ref, rec := range records {
		uuid := rec.members["uuid"].text
		refs := must(class+".get_all_where", fmt.Sprintf(`field "uuid"=%q`, uuid)).arr
		if len(refs) != 1 || refs[0].text != ref {
			failf("%s.get_all_where field \"uuid\"=%q: %v, want [%s]", class, uuid, refs, ref)
		}
		break
	}
	return n
}

// servedClasses are the classes the simulator serves methods of.
func servedClasses() []string {
	seen := map[string]bool{}
	var out []string
	for _, sig := range xapisim.Signatures() {
		class, _, _ := strings.Cut(sig.Name, ".")
		if !seen[class] {
			seen[class] = true
			out = append(out, class)
		}
	}
	sort.Strings(out)
	return out
}

func hasMessage(class, name string) bool {
	for _, m := range classes[class].Messages {
		if m.Name == name {
			return true
		}
	}
	return false
}

func checkRecord(class, ref string, rec xv) {
	if rec.tag != "struct" {
		failf("%s %s: record is <%s>, not a struct", class, ref, rec.tag)
		return
	}
	for _, f := range classes[class].Fields {
		v, ok := rec.members[f.Name]
		if !ok {
			if f.Lifecycle.State != "Removed_s" {
				failf("%s.%s: missing from the record of %s", class, f.Name, ref)
			}
			continue
		}
		if err := checkType(f.Type, v); err != nil {
			failf("%s.%s (%s) of %s: %v", class, f.Name, f.Type, ref, err)
		}
	}
}

var intRE = regexp.MustCompile(`^-?\d+$`)

// checkType checks a wire value against a datamodel type.
func checkType(t string, v xv) error {
	untyped := v.tag == "" || v.tag == "string"
	switch {
	case t == "string":
		if !untyped {
			return fmt.Errorf("<%s>, want a string", v.tag)
		}
	case t == "int":
		if !untyped || !intRE.MatchString(v.text) {
			return fmt.Errorf("<%s>%q, want an untyped decimal int", v.tag, v.text)
		}
	case t == "float":
		if v.tag != "double" {
			return fmt.Errorf("<%s>, want <double>", v.tag)
		}
		if _, err := strconv.ParseFloat(v.text, 64); err != nil && v.text != "inf" && v.text != "-inf" && v.text != "nan" {
			return err
		}
	case t == "bool":
		if v.tag != "boolean" || (v.text != "0" && v.text != "1") {
			return fmt.Errorf("<%s>%q, want <boolean>0|1", v.tag, v.text)
		}
	case t == "datetime":
		if v.tag != "dateTime.iso8601" {
			return fmt.Errorf("<%s>, want <dateTime.iso8601>", v.tag)
		}
		if _, err := time.Parse("20060102T15:04:05Z", v.text); err != nil {
			return err
		}
	case strings.HasPrefix(t, "(") && strings.HasSuffix(t, ") map"):
		if v.tag != "struct" {
			return fmt.Errorf("<%s>, want <struct>", v.tag)
		}
		k, val, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(t, "("), ") map"), " -> ")
		for key, e := range v.members {
			if err := checkType(k, xv{text: key}); err != nil {
				return fmt.Errorf("key %q: %w", key, err)
			}
			if err := checkType(val, e); err != nil {
				return fmt.Errorf("[%s]: %w", key, err)
			}
		}
	case strings.HasSuffix(t, " set"):
		if v.tag != "array" {
			return fmt.Errorf("<%s>, want <array>", v.tag)
		}
		for i, e := range v.arr {
			if err := checkType(strings.TrimSuffix(t, " set"), e); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	case strings.HasSuffix(t, " ref"):
		if !untyped || !strings.HasPrefix(v.text, "OpaqueRef:") {
			return fmt.Errorf("%q, want an OpaqueRef", v.text)
		}
	case strings.HasPrefix(t, "enum "):
		values := enums[strings.TrimPrefix(t, "enum ")]
		if !untyped || !values[v.text] {
			return fmt.Errorf("%q is not a value of %s", v.text, t)
		}
	case strings.HasSuffix(t, " record"):
		if v.tag != "struct" {
			return fmt.Errorf("<%s>, want <struct>", v.tag)
		}
	default:
		return fmt.Errorf("unknown type %s", t)
	}
	return nil
}

// xv is an XML-RPC value with its type tag ("" when untyped).
type xv struct {
	tag     string
	text    string
	arr     []xv
	members map[string]xv
}

func call(url, method string, args ...any) (xv, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0"?><methodCall><methodName>%s</methodName><params>`, method)
	for _, a := range args {
		b.WriteString("<param>")
		writeValue(&b, a)
		b.WriteString("</param>")
	}
	b.WriteString("</params></methodCall>")
	resp, err := http.Post(url, "text/xml", &b) //nolint:gosec // the simulator this program started, on loopback
	if err != nil {
		return xv{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	d := xml.NewDecoder(resp.Body)
	for {
		tok, err := d.Token()
		if err != nil {
			return xv{}, fmt.Errorf("no value in the response: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "value" {
			v, err := parse(d)
			if err != nil {
				return xv{}, err
			}
			if method == "system.listMethods" {
				return v, nil
			}
			if v.members["Status"].text == "Success" {
				return v.members["Value"], nil
			}
			var desc []string
			for _, e := range v.members["ErrorDescription"].arr {
				desc = append(desc, e.text)
			}
			return xv{}, errors.New(strings.Join(desc, " "))
		}
	}
}

// writeValue writes a call argument as an XML-RPC <value>.
func writeValue(b *bytes.Buffer, a any) {
	b.WriteString("<value>")
	switch x := a.(type) {
	case string:
		_ = xml.EscapeText(b, []byte(x))
	case bool:
		if x {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case float64:
		fmt.Fprintf(b, "<double>%g</double>", x)
	case []string:
		b.WriteString("<array><data>")
		for _, e := range x {
			writeValue(b, e)
		}
		b.WriteString("</data></array>")
	case map[string]any:
		b.WriteString("<struct>")
		for k, e := range x {
			fmt.Fprintf(b, "<member><name>%s</name>", k)
			writeValue(b, e)
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	}
	b.WriteString("</value>")
}

// parse reads the inside of a <value>.
func parse(d *xml.Decoder) (xv, error) {
	var v xv
	for {
		tok, err := d.Token()
		if err != nil {
			return v, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if v.tag == "" {
				v.text += string(t)
			}
		case xml.EndElement:
			if t.Name.Local == "value" {
				return v, nil
			}
		case xml.StartElement:
			v.tag = t.Name.Local
			switch v.tag {
			case "array":
				for {
					tok, err := d.Token()
					if err != nil {
						return v, err
					}
					if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "value" {
						e, err := parse(d)
						if err != nil {
							return v, err
						}
						v.arr = append(v.arr, e)
					}
					if ee, ok := tok.(xml.EndElement); ok && ee.Name.Local == "array" {
						break
					}
				}
			case "struct":
				v.members = map[string]xv{}
				var name string
				for {
					tok, err := d.Token()
					if err != nil {
						return v, err
					}
					if se, ok := tok.(xml.StartElement); ok {
						switch se.Name.Local {
						case "name":
							if err := d.DecodeElement(&name, &se); err != nil {
								return v, err
							}
						case "value":
							e, err := parse(d)
							if err != nil {
								return v, err
							}
							v.members[name] = e
						}
					}
					if ee, ok := tok.(xml.EndElement); ok && ee.Name.Local == "struct" {
						break
					}
				}
			default:
				if err := d.DecodeElement(&v.text, &t); err != nil {
					return v, err
				}
			}
		}
	}
}
