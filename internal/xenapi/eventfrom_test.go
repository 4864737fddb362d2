package xenapi

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/kolo/xmlrpc"
	. "github.com/onsi/gomega"

	"github.com/xen-operator/xen-operator/internal/xapisim"
)

// The streaming decoder is compared with the kolo decoding it replaced
// (kolo_test.go) on responses of the simulator, which writes xapi's wire
// format, and on the same responses written other ways XML-RPC allows.

// rawCall posts an XML-RPC call and returns the response body as it came.
func rawCall(t testing.TB, url, method string, args ...any) []byte {
	t.Helper()
	req, err := xmlrpc.EncodeMethodCall(method, args...)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "text/xml", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func rawLogin(t testing.TB, url string) string {
	t.Helper()
	ref, _, err := koloResponse[string](&rpc{}, "session.login_with_password",
		rawCall(t, url, "session.login_with_password", "root", password, "1.0", "decode-test"))
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// simResponses are xapi-shaped responses taken from a simulated pool.
type simResponses struct {
	// events are event.from responses: every object as an add, then mods,
	// dels and task events, then failures.
	events [][]byte
	// calls are other responses by method.
	calls map[string][]byte
}

// newSimResponses fills a simulated pool with what the decoder must get
// right (names with XML's special characters, empty strings, maps, sets of
// refs, dates, doubles, big ints, deletions, classes the watcher does not
// follow) and records the responses that show them.
func newSimResponses(t testing.TB) *simResponses {
	t.Helper()
	g := NewGomega(func(msg string, _ ...int) { t.Helper(); t.Fatal(msg) })
	s := newSim(t, xapisim.Config{})
	p := newSessions(t, Options{})
	c := mustClient(t, p, "decode", endpoint(s.URL()))
	ctx := context.Background()
	url := s.URL()
	sess := rawLogin(t, url)
	out := &simResponses{calls: map[string][]byte{}}
	from := func(token string) string {
		body := rawCall(t, url, "event.from", sess, []string{"*"}, token, 0.2)
		out.events = append(out.events, body)
		tok, _, err := koloResponse[struct {
			Token string `xmlrpc:"token"`
		}](&rpc{}, "event.from", body)
		g.Expect(err).NotTo(HaveOccurred())
		return tok.Token
	}

	bf, err := s.Brownfield(4, "Debian Bookworm 12", "bf", true)
	g.Expect(err).NotTo(HaveOccurred())
	vm := install(ctx, g, c, "Debian Bookworm 12", `Web & DB <prod> "eu" 'x' café ☕`)
	g.Expect(c.SetVMNameDescription(ctx, vm.Ref, "literally &amp; and ]]> and &#60;")).To(Succeed())
	g.Expect(c.SetVMOtherConfig(ctx, vm.Ref, map[string]string{"a": "<b & c>", "empty": "", "xen-operator/uid": "1234"})).To(Succeed())
	g.Expect(c.SetVMTags(ctx, vm.Ref, []string{"t1", "", "a&b"})).To(Succeed())
	g.Expect(c.BlockVMOperation(ctx, vm.Ref, "destroy", "protected <by> us")).To(Succeed())
	g.Expect(c.SetVMMemoryLimits(ctx, vm.Ref, 1<<30, 1<<38, 1<<30, 1<<32)).To(Succeed())
	snap, err := c.SnapshotVM(ctx, vm.Ref, "snap & shot")
	g.Expect(err).NotTo(HaveOccurred())
	token := from("")

	g.Expect(c.StartVM(ctx, vm.Ref, false)).To(Succeed())
	g.Expect(c.AddToVMOtherConfig(ctx, vm.Ref, "later", "x > y")).To(Succeed())
	gone, err := c.VMByUUID(ctx, bf[0].UUID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.HardShutdownVM(ctx, gone.Ref)).To(Succeed())
	g.Expect(c.DestroyVM(ctx, gone.Ref)).To(Succeed())
	for _, vbd := range gone.VBDs {
		if b, err := c.VBD(ctx, vbd); err == nil && b.VDI != "" {
			g.Expect(c.DestroyVDI(ctx, b.VDI)).To(Succeed())
		}
	}
	g.Expect(c.DestroyVM(ctx, snap)).To(Succeed())
	from(token)

	// Failures: a dead session, a bad token; EVENTS_LOST is written by hand
	// below, the simulator has no queue to overflow.
	out.events = append(out.events,
		rawCall(t, url, "event.from", "OpaqueRef:dead", []string{"*"}, "", 0.2),
		rawCall(t, url, "event.from", sess, []string{"*"}, "not a token", 0.2))

	for _, class := range []string{"VM", "host", "pool", "SR", "PBD", "VDI", "VBD", "VIF", "network", "task"} {
		out.calls[class+".get_all_records"] = rawCall(t, url, class+".get_all_records", sess)
	}
	out.calls["VM.get_record"] = rawCall(t, url, "VM.get_record", sess, vm.Ref)
	out.calls["VM.get_VBDs"] = rawCall(t, url, "VM.get_VBDs", sess, vm.Ref)
	out.calls["VM.get_by_uuid"] = rawCall(t, url, "VM.get_by_uuid", sess, vm.UUID)
	out.calls["VM.get_record bad"] = rawCall(t, url, "VM.get_record", sess, "OpaqueRef:nope")
	return out
}

// decodeBoth decodes an event.from response the old way and the new way.
func decodeBoth(body []byte, stream func(io.Reader) io.Reader) (old, got *eventBatch, oldCode, code string, oldErr, err error) {
	r := &rpc{endpoint: "sim"}
	old, oldCode, oldErr = koloEventFrom(r, body)
	got = &eventBatch{}
	code, err = r.readResponse("event.from", stream(bytes.NewReader(body)), func(s *scanner) error {
		got = &eventBatch{}
		return got.decode(s)
	})
	return old, got, oldCode, code, oldErr, err
}

func expectSameDecoding(g Gomega, body []byte) {
	for _, stream := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
	} {
		old, got, oldCode, code, oldErr, err := decodeBoth(body, stream)
		g.Expect(code).To(Equal(oldCode))
		var xe *Error
		switch {
		case errors.As(oldErr, &xe):
			g.Expect(err).To(Equal(oldErr))
		case oldErr != nil:
			g.Expect(IsConnectionError(err)).To(BeTrue(), "kolo: %v, now: %v", oldErr, err)
		default:
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.token).To(Equal(old.token))
			g.Expect(got.events).To(HaveLen(len(old.events)))
			for i := range old.events {
				g.Expect(got.events[i]).To(Equal(old.events[i]), "event %d", i)
			}
		}
	}
}

// TestDecodingAsBefore compares the decoding of the simulator's responses,
// written in several styles, with kolo's.
func TestDecodingAsBefore(t *testing.T) {
	resp := newSimResponses(t)
	t.Run("event.from", func(t *testing.T) { testEventFromAsBefore(t, resp) })
	t.Run("calls", func(t *testing.T) { testCallsAsBefore(t, resp) })
}

func testEventFromAsBefore(t *testing.T, resp *simResponses) {
	g := NewWithT(t)
	eventsLost := []byte(response(`<value><struct><member><name>Status</name><value>Failure</value></member>` +
		`<member><name>ErrorDescription</name><value><array><data><value>EVENTS_LOST</value></data></array></value></member></struct></value>`))
	bodies := slices.Concat(resp.events, [][]byte{eventsLost})

	// What the bodies hold, lest the comparison be of nothing.
	all := string(bytes.Join(bodies, nil))
	for _, s := range []string{"<value></value>", "&amp;", "&lt;", "<dateTime.iso8601>", "<double>", "<boolean>1</boolean>",
		"<i4>", "<name>operation</name><value>del</value>", "<name>class</name><value>vm_metrics</value>",
		"<name>class</name><value>task</value>", "SESSION_INVALID", "EVENT_FROM_TOKEN_PARSE_FAILURE", "274877906944"} {
		g.Expect(all).To(ContainSubstring(s))
	}

	for _, st := range styles {
		t.Run(st.String(), func(t *testing.T) {
			for _, body := range bodies {
				expectSameDecoding(NewWithT(t), st.rewrite(t, body))
			}
		})
	}
}

// testCallsAsBefore compares the decoding of other calls' responses.
func testCallsAsBefore(t *testing.T, resp *simResponses) {
	for _, st := range styles {
		t.Run(st.String(), func(t *testing.T) {
			g := NewWithT(t)
			for method, body := range resp.calls {
				body = st.rewrite(t, body)
				method, _, _ = strings.Cut(method, " ")
				switch method {
				case "VM.get_all_records":
					expectSameCall[map[string]vmWire](g, method, body)
				case "host.get_all_records":
					expectSameCall[map[string]hostWire](g, method, body)
				case "pool.get_all_records":
					expectSameCall[map[string]poolWire](g, method, body)
				case "SR.get_all_records":
					expectSameCall[map[string]srWire](g, method, body)
				case "PBD.get_all_records":
					expectSameCall[map[string]pbdWire](g, method, body)
				case "VDI.get_all_records":
					expectSameCall[map[string]vdiWire](g, method, body)
				case "VBD.get_all_records":
					expectSameCall[map[string]vbdWire](g, method, body)
				case "VIF.get_all_records":
					expectSameCall[map[string]vifWire](g, method, body)
				case "network.get_all_records":
					expectSameCall[map[string]networkWire](g, method, body)
				case "task.get_all_records":
					expectSameCall[map[string]taskWire](g, method, body)
				case "VM.get_record":
					expectSameCall[vmWire](g, method, body)
				case "VM.get_VBDs":
					expectSameCall[[]string](g, method, body)
				case "VM.get_by_uuid":
					expectSameCall[string](g, method, body)
				default:
					t.Fatalf("no type for %s", method)
				}
			}
		})
	}
}

func expectSameCall[T any](g Gomega, method string, body []byte) {
	r := &rpc{endpoint: "sim"}
	old, oldCode, oldErr := koloResponse[T](r, method, body)
	var got T
	code, err := r.readResponse(method, bytes.NewReader(body), valueInto(&got))
	g.Expect(code).To(Equal(oldCode), method)
	if oldErr != nil {
		g.Expect(err).To(Equal(oldErr), method)
		return
	}
	g.Expect(err).NotTo(HaveOccurred(), method)
	g.Expect(got).To(Equal(old), method)
}

// style is a way of writing the same XML-RPC document.
type style struct {
	// reversed writes struct members last first: an event's snapshot before
	// its class, the Value before the Status.
	reversed bool
	// selfClosed writes empty values <value/>; typed writes strings
	// <string>...</string>.
	selfClosed, typed bool
	// pretty indents; numeric writes characters as numeric references.
	pretty, numeric bool
}

var styles = []style{
	{}, // as xapi writes it
	{reversed: true},
	{selfClosed: true},
	{typed: true, selfClosed: true},
	{pretty: true, reversed: true},
	{numeric: true},
}

func (st style) String() string {
	if st == (style{}) {
		return "as xapi"
	}
	var parts []string
	for name, on := range map[string]bool{"reversed": st.reversed, "selfClosed": st.selfClosed, "typed": st.typed,
		"pretty": st.pretty, "numeric": st.numeric} {
		if on {
			parts = append(parts, name)
		}
	}
	return strings.Join(parts, "+")
}

// xval is an XML-RPC value as written.
type xval struct {
	typ   string // "" for an untyped string
	text  string
	names []string // of a struct's members
	elems []*xval  // a struct's member values, an array's elements
}

func parseXval(d *xml.Decoder) (*xval, error) {
	v := &xval{}
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.EndElement: // </value>
			if v.typ == "" {
				v.text = text.String()
			}
			return v, nil
		case xml.StartElement:
			v.typ = t.Name.Local
			switch v.typ {
			case "struct", "array":
				if err := parseXcontainer(d, v); err != nil {
					return nil, err
				}
			default:
				var s string
				if err := d.DecodeElement(&s, &t); err != nil {
					return nil, err
				}
				v.text = s
			}
		}
	}
}

func parseXcontainer(d *xml.Decoder, v *xval) error {
	name := ""
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "name":
				if err := d.DecodeElement(&name, &t); err != nil {
					return err
				}
			case "value":
				e, err := parseXval(d)
				if err != nil {
					return err
				}
				v.names, v.elems = append(v.names, name), append(v.elems, e)
			}
		case xml.EndElement:
			if t.Name.Local == v.typ {
				return nil
			}
		}
	}
}

// rewrite writes an XML-RPC response in the style.
func (st style) rewrite(t testing.TB, body []byte) []byte {
	t.Helper()
	out, err := st.tryRewrite(body)
	if err != nil {
		t.Fatalf("rewriting: %v", err)
	}
	return out
}

// tryRewrite is rewrite for a body encoding/xml may refuse.
func (st style) tryRewrite(body []byte) ([]byte, error) {
	if st == (style{}) {
		return body, nil
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "value" {
			break
		}
	}
	v, err := parseXval(d)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?><methodResponse><params><param>`)
	st.write(&b, v, 1)
	b.WriteString(`</param></params></methodResponse>`)
	return b.Bytes(), nil
}

func (st style) indent(b *bytes.Buffer, depth int) {
	if st.pretty {
		b.WriteString("\n" + strings.Repeat("  ", depth))
	}
}

func (st style) escape(b *bytes.Buffer, s string) {
	for _, r := range s {
		switch {
		case st.numeric && (r == '<' || r == '>' || r == '&' || r == '"' || r >= 0x80):
			fmt.Fprintf(b, "&#%d;", r)
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '&':
			b.WriteString("&amp;")
		case r == '"':
			b.WriteString("&quot;")
		default:
			b.WriteRune(r)
		}
	}
}

func (st style) write(b *bytes.Buffer, v *xval, depth int) {
	st.indent(b, depth)
	switch {
	case v.typ == "" && v.text == "" && st.selfClosed && !st.typed:
		b.WriteString("<value/>")
		return
	case v.typ == "" && st.typed:
		if v.text == "" && st.selfClosed {
			b.WriteString("<value><string/></value>")
			return
		}
		b.WriteString("<value><string>")
		st.escape(b, v.text)
		b.WriteString("</string></value>")
		return
	case v.typ == "":
		b.WriteString("<value>")
		st.escape(b, v.text)
		b.WriteString("</value>")
		return
	}
	b.WriteString("<value>")
	st.indent(b, depth+1)
	b.WriteString("<" + v.typ + ">")
	switch v.typ {
	case "struct":
		for i := range v.elems {
			if st.reversed {
				i = len(v.elems) - 1 - i
			}
			st.indent(b, depth+2)
			b.WriteString("<member>")
			st.indent(b, depth+3)
			b.WriteString("<name>")
			st.escape(b, v.names[i])
			b.WriteString("</name>")
			st.write(b, v.elems[i], depth+3)
			st.indent(b, depth+2)
			b.WriteString("</member>")
		}
	case "array":
		st.indent(b, depth+2)
		b.WriteString("<data>")
		for _, e := range v.elems {
			st.write(b, e, depth+3)
		}
		st.indent(b, depth+2)
		b.WriteString("</data>")
	default:
		st.escape(b, v.text)
		b.WriteString("</" + v.typ + ">")
		st.indent(b, depth)
		b.WriteString("</value>")
		return
	}
	st.indent(b, depth+1)
	b.WriteString("</" + v.typ + ">")
	st.indent(b, depth)
	b.WriteString("</value>")
}

// ocamlString writes s as ocaml-rpc does: only < > & " escaped, control
// characters but TAB, LF and CR dropped.
func ocamlString(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
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
	return b.String()
}

// asRead is what an XML parser reads of a string ocamlString wrote: no
// control characters, CR LF and CR as LF.
func asRead(s string) string {
	kept := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 || c == '\t' || c == '\n' || c == '\r' {
			kept = append(kept, c)
		}
	}
	s = string(kept)
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// fuzzBody is an event.from response with a VM add, a task mod and a VDI
// deletion, from the fuzzed values.
func fuzzBody(name, key, value string, memory int64, progress float64, flags uint8) []byte {
	v := func(s string) string { return "<value>" + ocamlString(s) + "</value>" }
	member := func(n, val string) string { return "<member><name>" + n + "</name>" + val + "</member>" }
	vm := "<value><struct>" + member("uuid", v("u-1")) + member("name_label", v(name)) + member("name_description", "<value></value>") +
		member("power_state", v("Halted")) + member("is_a_template", "<value><boolean>"+strconv.Itoa(int(flags&1))+"</boolean></value>") +
		member("memory_static_max", v(strconv.FormatInt(memory, 10))) +
		member("other_config", "<value><struct>"+member(ocamlString(key), v(value))+member("empty", "<value></value>")+"</struct></value>") +
		member("tags", "<value><array><data>"+v(name)+"<value></value>"+v(value)+"</data></array></value>") +
		member("resident_on", v(NullRef)) +
		member("snapshot_time", "<value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value>") +
		"</struct></value>"
	task := "<value><struct>" + member("uuid", v("t-1")) + member("name_label", v("Async.VM.clone")) +
		member("progress", "<value><double>"+strconv.FormatFloat(progress, 'g', 16, 64)+"</double></value>") +
		member("error_info", "<value><array><data></data></array></value>") + "</struct></value>"
	event := func(class, op, ref, snapshot string) string {
		s := "<value><struct>" + member("class", v(class)) + member("id", v("1")) + member("operation", v(op)) + member("ref", v(ref))
		if snapshot != "" {
			s += member("snapshot", snapshot)
		}
		return s + member("timestamp", v("0.0")) + "</struct></value>"
	}
	return []byte(response(`<value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value><struct>` +
		member("events", "<value><array><data>"+event("vm", "add", "OpaqueRef:1", vm)+event("task", "mod", "OpaqueRef:2", task)+
			event("vdi", "del", "OpaqueRef:3", "")+"</data></array></value>") +
		member("valid_ref_counts", "<value><struct>"+member("vm", "<value><i4>1</i4></value>")+"</struct></value>") +
		member("token", v("00000000000000000001,00000000000000000000")) +
		`</struct></value></member></struct></value>`))
}

// FuzzEventFromDecode decodes fuzzed event.from responses: the decoder
// reads back what was written, streamed or not, and agrees with kolo
// wherever kolo can read it (valid UTF-8, and no spaces around a string,
// which kolo trims).
func FuzzEventFromDecode(f *testing.F) {
	f.Add("web & db <1>", "k", "v", int64(1)<<40, 0.5, uint8(0))
	f.Add("", "xen-operator/uid", "", int64(-1), 1.0, uint8(0xff))
	f.Add("  padded\r\n", "a", "\x01\x02", int64(math.MaxInt64), 1e-300, uint8(3))
	f.Add("café ☕ ]]> &amp;", "é", "\"'", int64(0), 0.0, uint8(0x1e))
	f.Fuzz(func(t *testing.T, name, key, value string, memory int64, progress float64, flags uint8) {
		if math.IsNaN(progress) || math.IsInf(progress, 0) || asRead(key) == "empty" {
			return
		}
		st := style{reversed: flags&2 != 0, selfClosed: flags&4 != 0, typed: flags&8 != 0, pretty: flags&16 != 0, numeric: flags&32 != 0}
		// encoding/xml, which kolo and rewrite use, refuses invalid UTF-8
		// and characters XML excludes; the decoder takes the bytes as
		// they are.
		xmlOK := utf8.ValidString(name) && utf8.ValidString(key) && utf8.ValidString(value)
		body := fuzzBody(name, key, value, memory, progress, flags)
		if rewritten, err := st.tryRewrite(body); err == nil {
			body = rewritten
		} else {
			xmlOK = false
		}
		old, got, oldCode, code, oldErr, err := decodeBoth(body, iotest.HalfReader)
		if err != nil {
			t.Fatalf("%s: %v", code, err)
		}
		vm := got.events[0].VM()
		if vm == nil || vm.NameLabel != asRead(name) || vm.OtherConfig[asRead(key)] != asRead(value) ||
			vm.MemoryStaticMax != memory || vm.IsTemplate != (flags&1 != 0) || vm.ResidentOn != "" {
			t.Fatalf("decoded %+v", vm)
		}
		// xapi writes doubles %.16g.
		written, _ := strconv.ParseFloat(strconv.FormatFloat(progress, 'g', 16, 64), 64)
		if got.events[1].Task().Progress != written || got.events[2].Object != nil {
			t.Fatalf("decoded %+v", got.events)
		}
		trimmed := func(s string) bool { return strings.TrimSpace(asRead(s)) == asRead(s) }
		if !xmlOK || asRead(key) == "" || !trimmed(name) || !trimmed(key) || !trimmed(value) {
			return
		}
		if oldErr != nil {
			t.Fatalf("kolo: %s: %v", oldCode, oldErr)
		}
		if !equalEvents(old.events, got.events) || old.token != got.token {
			t.Fatalf("kolo decoded %+v, now %+v", old.events[0].Object, got.events[0].Object)
		}
	})
}

func equalEvents(a, b []Event) bool {
	g := NewGomega(func(string, ...int) {})
	return g.Expect(a).To(Equal(b))
}

// FuzzDecodeResponse feeds the decoder anything: it never panics, and reads
// the same from a stream as from memory.
func FuzzDecodeResponse(f *testing.F) {
	resp := newSimResponses(f)
	for _, b := range resp.events {
		f.Add(b)
	}
	for _, b := range resp.calls {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		decode := func(r io.Reader) (*eventBatch, string, error) {
			b := &eventBatch{}
			code, err := (&rpc{}).readResponse("event.from", r, func(s *scanner) error {
				b = &eventBatch{}
				return b.decode(s)
			})
			return b, code, err
		}
		b1, code1, err1 := decode(bytes.NewReader(body))
		b2, code2, err2 := decode(iotest.OneByteReader(bytes.NewReader(body)))
		if code1 != code2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("in memory %s %v, streamed %s %v", code1, err1, code2, err2)
		}
		if err1 == nil && (!equalEvents(b1.events, b2.events) || b1.token != b2.token) {
			t.Fatalf("in memory %+v, streamed %+v", b1, b2)
		}
	})
}
