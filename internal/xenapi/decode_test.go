package xenapi

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	. "github.com/onsi/gomega"
)

// decodeText decodes one XML-RPC value into a new T, from the text in
// memory and, to cross every buffer boundary, from a stream one byte at a
// time; the two must agree.
func decodeText[T any](g Gomega, text string) (T, error) {
	inMemory, err := decodeValueText[T](text)
	s := newScanner(iotest.OneByteReader(strings.NewReader(text)))
	defer s.free()
	var streamed T
	serr := s.expect(tokStart, "value")
	if serr == nil {
		serr = decodeValue(s, &streamed)
	}
	g.Expect(serr != nil).To(Equal(err != nil), "in memory: %v, streamed: %v", err, serr)
	g.Expect(streamed).To(Equal(inMemory))
	return inMemory, err
}

func TestDecodeStrings(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`<value>OpaqueRef:abc</value>`, "OpaqueRef:abc"},
		{`<value></value>`, ""},
		{`<value/>`, ""},
		{`<value />`, ""},
		{`<value><string>a b</string></value>`, "a b"},
		{`<value><string></string></value>`, ""},
		{`<value><string/></value>`, ""},
		{"<value>\n  <string>typed</string>\n</value>", "typed"},
		// An untyped value is a string as it is (kolo trims it).
		{`<value>  padded  </value>`, "  padded  "},
		{`<value>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos; &#233;&#xE9;&#x1F600;</value>`, `a & b <c> "d" 'e' éé😀`},
		{`<value><![CDATA[<x>&amp;]]>y</value>`, "<x>&amp;y"},
		{`<value>a<!-- a comment -->b<?pi x?>c</value>`, "abc"},
		{"<value>a\r\nb\rc\n</value>", "a\nb\nc\n"},
		{`<value>&#13;</value>`, "\r"},
		{"<value>a\r<!-- -->\nb\r<![CDATA[\nc\r\n]]></value>", "a\n\nb\n\nc\n"},
		{`<value><base64>aGk=</base64></value>`, "aGk="},
		{`<value>` + strings.Repeat("long ", 20000) + `</value>`, strings.Repeat("long ", 20000)},
	} {
		t.Run(tc.text[:min(len(tc.text), 40)], func(t *testing.T) {
			g := NewWithT(t)
			got, err := decodeText[string](g, tc.text)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestDecodeScalars(t *testing.T) {
	g := NewWithT(t)
	i, err := decodeText[int](g, `<value><i4>-7</i4></value>`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(i).To(Equal(-7))
	i64, err := decodeText[int64](g, `<value><i8>9223372036854775807</i8></value>`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(i64).To(Equal(int64(9223372036854775807)))
	i64, err = decodeText[int64](g, `<value><int>12</int></value>`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(i64).To(Equal(int64(12)))
	for text, want := range map[string]bool{
		`<value><boolean>1</boolean></value>`: true, `<value><boolean>0</boolean></value>`: false,
		`<value><boolean>true</boolean></value>`: true, `<value><boolean/></value>`: false,
	} {
		b, err := decodeText[bool](g, text)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(b).To(Equal(want), text)
	}
	for text, want := range map[string]float64{
		`<value><double>0.5</double></value>`: 0.5, `<value><double>1</double></value>`: 1,
		`<value><double>-1.25e+100</double></value>`: -1.25e100,
	} {
		f, err := decodeText[float64](g, text)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(f).To(Equal(want), text)
	}
	for text, want := range map[string]time.Time{
		`<value><dateTime.iso8601>20250319T04:16:24Z</dateTime.iso8601></value>`:        time.Date(2025, 3, 19, 4, 16, 24, 0, time.UTC),
		`<value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value>`:        time.Unix(0, 0).UTC(),
		`<value><dateTime.iso8601>20250319T04:16:24</dateTime.iso8601></value>`:         time.Date(2025, 3, 19, 4, 16, 24, 0, time.UTC),
		`<value><dateTime.iso8601>2025-03-19T04:16:24+01:00</dateTime.iso8601></value>`: time.Date(2025, 3, 19, 3, 16, 24, 0, time.UTC),
	} {
		d, err := decodeText[time.Time](g, text)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(d.Equal(want)).To(BeTrue(), "%s: %v", text, d)
	}
}

func TestDecodeContainers(t *testing.T) {
	g := NewWithT(t)
	refs, err := decodeText[[]string](g, `<value><array><data><value>a</value><value/><value></value><value><string>d</string></value></data></array></value>`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(refs).To(Equal([]string{"a", "", "", "d"}))
	for _, text := range []string{`<value><array><data></data></array></value>`, `<value><array><data/></array></value>`, `<value><array/></value>`} {
		refs, err := decodeText[[]string](g, text)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(refs).To(BeNil(), "an empty array is a nil slice, as with kolo")
	}

	m, err := decodeText[map[string]string](g, `<value><struct><member><name>k&amp;1</name><value>v</value></member><member><name>empty</name><value/></member><member><name></name><value>no name</value></member></struct></value>`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(m).To(Equal(map[string]string{"k&1": "v", "empty": "", "": "no name"}))
	m, err = decodeText[map[string]string](g, `<value><struct></struct></value>`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(m).To(Equal(map[string]string{}))

	counts, err := decodeText[map[string]int](g, `<value><struct><member><name>vm</name><value><i4>3</i4></value></member></struct></value>`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(counts).To(Equal(map[string]int{"vm": 3}))

	type inner struct {
		A string   `xmlrpc:"a"`
		N []int64  `xmlrpc:"n"`
		P *float64 `xmlrpc:"p"`
	}
	type outer struct {
		Name    string           `xmlrpc:"name"`
		Inner   inner            `xmlrpc:"inner"`
		ByRef   map[string]inner `xmlrpc:"by_ref"`
		Skipped string           `xmlrpc:"-"`
		Untaged string
	}
	text := `<value>
	  <struct>
	    <member><name>unknown</name><value><struct><member><name>x</name><value><array><data><value/></data></array></value></member></struct></value></member>
	    <member><name>name</name><value>n</value></member>
	    <member><name>inner</name><value><struct><member><name>p</name><value><double>2.5</double></value></member><member><name>a</name><value/></member><member><name>n</name><value><array><data><value><i8>1</i8></value><value><int>2</int></value></data></array></value></member></struct></value></member>
	    <member><name>by_ref</name><value><struct><member><name>OpaqueRef:1</name><value><struct><member><name>a</name><value>one</value></member></struct></value></member><member><name>OpaqueRef:2</name><value><struct/></value></member></struct></value></member>
	    <member><name>-</name><value>not a field</value></member>
	    <member><name>Untaged</name><value>by its name</value></member>
	  </struct>
	</value>`
	o, err := decodeText[outer](g, text)
	g.Expect(err).NotTo(HaveOccurred())
	p := 2.5
	g.Expect(o).To(Equal(outer{Name: "n", Inner: inner{A: "", N: []int64{1, 2}, P: &p},
		ByRef: map[string]inner{"OpaqueRef:1": {A: "one"}, "OpaqueRef:2": {}}, Untaged: "by its name"}))
}

func TestDecodeErrors(t *testing.T) {
	for _, text := range []string{
		`<value><boolean>1</boolean></value>`,         // into a string
		`<value><array><data></data></array></value>`, // into a string
		`<value><struct></struct></value>`,            // into a string
		`<value>a<string>b</string></value>`,
		`<value><foo>1</foo></value>`,
		`<value>&nbsp;</value>`,
		`<value>&#0;</value>`,
		`<value>&amp</value>`,
		`<value>abc</string>`,
		`<value>abc`,
		`<value><string>abc</value>`,
		`<value><!DOCTYPE x></value>`,
		`<value></>`,
		``,
		`abc`,
	} {
		t.Run(text, func(t *testing.T) {
			g := NewWithT(t)
			_, err := decodeText[string](g, text)
			g.Expect(err).To(HaveOccurred())
		})
	}
	for _, text := range []string{
		`<value>12</value>`, // xapi's ints are strings: into an int, kolo refused them too
		`<value><int>x</int></value>`,
		`<value><i4>99999999999999999999</i4></value>`,
		`<value><double>1</double></value>`,
	} {
		t.Run(text, func(t *testing.T) {
			g := NewWithT(t)
			_, err := decodeText[int](g, text)
			g.Expect(err).To(HaveOccurred())
		})
	}
	for _, text := range []string{
		`<value><struct><member><name>a</name></member></struct></value>`,
		`<value><struct><member><value>x</value></member></struct></value>`,
		`<value><struct><member><name>a</name><value>x</value></member>`,
		`<value><struct><name>a</name></struct></value>`,
		`<value><array><data><value>x</value></data></value>`,
	} {
		t.Run(text, func(t *testing.T) {
			g := NewWithT(t)
			_, err := decodeText[map[string]string](g, text)
			g.Expect(err).To(HaveOccurred())
			_, err = decodeText[[]string](g, text)
			g.Expect(err).To(HaveOccurred())
		})
	}
}

func response(value string) string {
	return `<?xml version="1.0"?>` + "\n" + `<methodResponse><params><param>` + value + `</param></params></methodResponse>`
}

func TestReadResponse(t *testing.T) {
	r := &rpc{endpoint: "xapi.example"}
	read := func(body io.Reader) (string, string, error) {
		var v string
		code, err := r.readResponse("VM.get_uuid", body, valueInto(&v))
		return v, code, err
	}
	g := NewWithT(t)

	v, code, err := read(strings.NewReader(response(`<value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value>u-1</value></member></struct></value>`)))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal("SUCCESS"))
	g.Expect(v).To(Equal("u-1"))

	// Members in any order, unknown ones skipped.
	v, code, err = read(strings.NewReader(response(`<value><struct><member><name>Value</name><value>u-2</value></member><member><name>Extra</name><value><array><data/></array></value></member><member><name>Status</name><value>Success</value></member></struct></value>`)))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal("SUCCESS"))
	g.Expect(v).To(Equal("u-2"))

	_, code, err = read(strings.NewReader(response(`<value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>HANDLE_INVALID</value><value>VM</value><value/></data></array></value></member></struct></value>`)))
	g.Expect(code).To(Equal("HANDLE_INVALID"))
	g.Expect(err).To(Equal(&Error{Method: "VM.get_uuid", Code: "HANDLE_INVALID", Params: []string{"VM", ""}}))

	for _, body := range []string{
		response(`<value><struct><member><name>Value</name><value>u</value></member></struct></value>`),
		response(`<value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value><boolean>1</boolean></value></member></struct></value>`),
		response(`<value><array><data/></array></value>`),
		`<?xml version="1.0"?><methodResponse><fault><value><struct><member><name>faultCode</name><value><int>1</int></value></member><member><name>faultString</name><value>no</value></member></struct></value></fault></methodResponse>`,
		`<html><body>Internal error</body></html>`,
		response(`<value><struct><member><name>Status</name><value>Success</value></member>`),
		"",
	} {
		_, code, err = read(strings.NewReader(body))
		g.Expect(code).To(Equal("DECODE"), body)
		g.Expect(IsConnectionError(err)).To(BeTrue(), body)
		g.Expect(err.Error()).To(HavePrefix("xenapi: cannot reach xapi.example: VM.get_uuid: "))
	}

	// The connection failing mid-response is a connection error, not a
	// malformed response.
	reset := errors.New("connection reset by peer")
	_, code, err = read(io.MultiReader(strings.NewReader(`<methodResponse><params><param><value><struct><member><name>Status</name>`), iotest.ErrReader(reset)))
	g.Expect(code).To(Equal("CONNECTION"))
	g.Expect(IsConnectionError(err)).To(BeTrue())
	g.Expect(errors.Is(err, reset)).To(BeTrue())
}

// TestCaptureAcrossBuffers decodes events whose snapshot comes before their
// class, so that it is kept raw while the stream moves on, in an event
// bigger than the scanner's buffer.
func TestCaptureAcrossBuffers(t *testing.T) {
	g := NewWithT(t)
	big := strings.Repeat("x", 3*scanBufSize)
	event := func(ref string) string {
		return `<value><struct><member><name>snapshot</name><value><struct>` +
			`<member><name>name_label</name><value>` + big + `</value></member>` +
			`<member><name>other_config</name><value><struct><member><name>k</name><value/></member></struct></value></member>` +
			`</struct></value></member>` +
			`<member><name>ref</name><value>` + ref + `</value></member>` +
			`<member><name>operation</name><value>mod</value></member>` +
			`<member><name>class</name><value>vm</value></member></struct></value>`
	}
	body := response(`<value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value><struct>` +
		`<member><name>events</name><value><array><data>` + event("OpaqueRef:1") + event("OpaqueRef:2") + `</data></array></value></member>` +
		`<member><name>token</name><value>t</value></member></struct></value></member></struct></value>`)
	for _, reader := range []io.Reader{strings.NewReader(body), iotest.HalfReader(strings.NewReader(body)), iotest.OneByteReader(strings.NewReader(body))} {
		var b eventBatch
		code, err := (&rpc{}).readResponse("event.from", reader, b.decode)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(Equal("SUCCESS"))
		g.Expect(b.token).To(Equal("t"))
		g.Expect(b.events).To(HaveLen(2))
		for i, e := range b.events {
			g.Expect(e.Ref).To(Equal([]string{"OpaqueRef:1", "OpaqueRef:2"}[i]))
			g.Expect(e.VM()).NotTo(BeNil())
			g.Expect(e.VM().Ref).To(Equal(e.Ref))
			g.Expect(e.VM().NameLabel).To(Equal(big))
			g.Expect(e.VM().OtherConfig).To(Equal(map[string]string{"k": ""}))
		}
	}
}

// skip counts tags only: whatever an ignored member holds (markup in CDATA
// and comments, self-closing values, nested arrays and structs, entities),
// the member after it decodes, in memory and one byte at a time.
func TestSkipPassesOverAnyValue(t *testing.T) {
	g := NewWithT(t)
	type rec struct {
		Name string `xmlrpc:"name_label"`
	}
	for _, ignored := range []string{
		`<value/>`,
		`<value></value>`,
		`<value>OpaqueRef:1</value>`,
		`<value><array><data><value>OpaqueRef:1</value><value/><value><array><data/></array></value></data></array></value>`,
		`<value><struct><member><name>k</name><value><struct/></value></member></struct></value>`,
		`<value><![CDATA[</value></member><member><name>name_label</name><value>wrong]]></value>`,
		`<value><!-- </value> --><string>a &lt;b&gt; &amp; c</string></value>`,
		`<value><?pi </value>?>x</value>`,
	} {
		r, err := decodeText[rec](g, `<value><struct><member><name>other</name>`+ignored+
			`</member><member><name>name_label</name><value>vm</value></member></struct></value>`)
		g.Expect(err).NotTo(HaveOccurred(), ignored)
		g.Expect(r).To(Equal(rec{Name: "vm"}), ignored)
	}
	for _, bad := range []string{
		`<value><array><data><value>x</value>`, // ends inside the value
		`<value><!DOCTYPE x></value>`,
		`<value><></value>`,
		`<value></ ></value>`,
		`<value><data></></value>`,
	} {
		_, err := decodeText[rec](g, `<value><struct><member><name>other</name>`+bad)
		g.Expect(err).To(HaveOccurred(), bad)
	}
}
