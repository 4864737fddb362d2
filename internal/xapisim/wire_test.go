package xapisim

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestValueEncoding(t *testing.T) {
	cases := []struct {
		name string
		in   any
		want string
	}{
		{"string is untyped", "OpaqueRef:abc", "<value>OpaqueRef:abc</value>"},
		{"empty string", "", "<value></value>"},
		{"only > < & \" are escaped", `a<b>&"c'`, "<value>a&lt;b&gt;&amp;&quot;c'</value>"},
		{"control characters are dropped", "a\x01b\tc\nd", "<value>ab\tc\nd</value>"},
		{"64-bit int is untyped", int64(8589934592), "<value>8589934592</value>"},
		{"negative int", int64(-1), "<value>-1</value>"},
		{"i4", int32(7), "<value><i4>7</i4></value>"},
		{"double as %.16g", 1.0, "<value><double>1</double></value>"},
		{"fractional double", 0.25, "<value><double>0.25</double></value>"},
		{"true", true, "<value><boolean>1</boolean></value>"},
		{"false", false, "<value><boolean>0</boolean></value>"},
		{"datetime", time.Date(2025, 3, 19, 4, 16, 24, 0, time.UTC), "<value><dateTime.iso8601>20250319T04:16:24Z</dateTime.iso8601></value>"},
		{"unset datetime is the epoch", epoch, "<value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value>"},
		{"empty set", []any{}, "<value><array><data></data></array></value>"},
		{"set", []any{"a", ""}, "<value><array><data><value>a</value><value></value></data></array></value>"},
		{"map in key order", map[string]any{"b": "2", "a": ""}, "<value><struct><member><name>a</name><value></value></member><member><name>b</name><value>2</value></member></struct></value>"},
		{"record in field order", &record{names: []string{"z", "a"}, values: []any{"1", int64(2)}}, "<value><struct><member><name>z</name><value>1</value></member><member><name>a</name><value>2</value></member></struct></value>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var b bytes.Buffer
			writeXMLValue(&b, tc.in)
			g.Expect(b.String()).To(Equal(tc.want))
		})
	}
	g := NewWithT(t)
	g.Expect(formatDouble(math.Inf(1))).To(Equal("inf"))
	g.Expect(formatDouble(1e21)).To(Equal("1e+21"))
}

func TestEnvelopeBytesOverHTTP(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL())

	resp, body := c.post("/", "text/xml", methodCall("session.login_with_password", "root", "xenserver"))
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("text/xml"))
	g.Expect(resp.Header.Get("Access-Control-Allow-Origin")).To(Equal("*"))
	g.Expect(string(body)).To(MatchRegexp(`^<\?xml version="1.0"\?><methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value>OpaqueRef:[0-9a-f-]{36}</value></member></struct></value></param></params></methodResponse>$`))
	v, _ := decodeResponse(t, body)
	session := v.(string)

	By := func(string) {}
	By("void results are an empty untyped value")
	_, body = c.post("/", "text/xml", methodCall("VM.set_name_description", session, c.withSession(session).vmByName("Debian Bookworm 12"), "x"))
	g.Expect(string(body)).To(Equal(`<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value></value></member></struct></value></param></params></methodResponse>`))

	By("failures are a Status/ErrorDescription struct, never a fault")
	_, body = c.post("/", "text/xml", methodCall("VM.get_record", session, "OpaqueRef:nope"))
	g.Expect(string(body)).To(Equal(`<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>HANDLE_INVALID</value><value>VM</value><value>OpaqueRef:nope</value></data></array></value></member></struct></value></param></params></methodResponse>`))
	g.Expect(string(body)).NotTo(ContainSubstring("fault"))

	By("system.listMethods is a bare array")
	_, body = c.post("/", "text/xml", methodCall("system.listMethods"))
	g.Expect(string(body)).To(HavePrefix(`<?xml version="1.0"?><methodResponse><params><param><value><array><data><value>`))
	list, _ := decodeResponse(t, body)
	g.Expect(list).To(ContainElements("VM.start", "VM.get_all_records", "event.from", "session.login_with_password", "task.cancel"))
	g.Expect(list).NotTo(ContainElement(HavePrefix("Async.")))

	By("any path no other route claims is XML-RPC")
	for _, path := range []string{"/RPC2", "/xmlrpc"} {
		resp, body := c.post(path, "text/xml", methodCall("VM.get_all", session))
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(string(body)).To(ContainSubstring("<name>Status</name><value>Success</value>"))
	}

	By("malformed XML is an HTTP 500 with an HTML body")
	resp, body = c.post("/", "text/xml", []byte("<methodCall><methodName>VM.get_all"))
	g.Expect(resp.StatusCode).To(Equal(500))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("text/html"))
	g.Expect(string(body)).To(ContainSubstring("<html>"))
}

func (c *rawClient) withSession(s string) *rawClient {
	cc := *c
	cc.session = s
	return &cc
}

func TestRecordsCarryEveryFieldWithEmptyStrings(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	_, body := c.post("/", "text/xml", methodCall("VM.get_all_records", c.session))
	// Empty strings go on the wire as <value></value>, as xapi sends them.
	g.Expect(string(body)).To(ContainSubstring("<name>PV_kernel</name><value></value>"))
	v, f := decodeResponse(t, body)
	g.Expect(f).NotTo(HaveOccurred())
	for ref, rec := range v.(map[string]any) {
		g.Expect(rec).To(HaveLen(len(model["VM"].fields)), "record of %s", ref)
		g.Expect(rec).To(HaveKeyWithValue("power_state", BeElementOf("Halted", "Running", "Paused", "Suspended")))
		g.Expect(rec).To(HaveKeyWithValue("is_a_template", BeAssignableToTypeOf(true)))
		g.Expect(rec).To(HaveKeyWithValue("memory_static_max", MatchRegexp(`^\d+$`)), "ints are untyped strings")
		g.Expect(rec).To(HaveKeyWithValue("HVM_shadow_multiplier", BeNumerically("==", 1)))
		g.Expect(rec).To(HaveKeyWithValue("snapshot_time", Equal(xmlDate("19700101T00:00:00Z"))))
	}
}

func TestInputsAcceptedAsXapiAcceptsThem(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.install("Debian Bookworm 12", "inputs")
	cases := []struct {
		name string
		arg  any
	}{
		{"int", rawXML("<int>3</int>")},
		{"i4", rawXML("<i4>3</i4>")},
		{"i8", rawXML("<i8>3</i8>")},
		{"decimal string", rawXML("3")},
		{"string tag", rawXML("<string>3</string>")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c.must("VM.set_VCPUs_max", vm, int64(8))
			_, f := c.do("VM.set_VCPUs_at_startup", vm, tc.arg)
			g.Expect(f).NotTo(HaveOccurred())
			g.Expect(c.field("VM", vm, "VCPUs_at_startup")).To(Equal("3"))
		})
	}
	t.Run("enums in any case", func(t *testing.T) {
		g := NewWithT(t)
		_, f := c.do("VM.set_actions_after_crash", vm, "DESTROY")
		g.Expect(f).NotTo(HaveOccurred())
		g.Expect(c.field("VM", vm, "actions_after_crash")).To(Equal("destroy"))
	})
	t.Run("a bool must be a boolean", func(t *testing.T) {
		g := NewWithT(t)
		_, f := c.do("VM.start", vm, "false", false)
		g.Expect(f).To(failWith(errInternalError))
	})
}

func TestDispatchErrors(t *testing.T) {
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vm := c.vmByName("Debian Bookworm 12")
	cases := []struct {
		name   string
		method string
		args   []any
		want   OmegaMatcher
	}{
		{"unknown method without params", "VM.frobnicate", nil, failWith(errMessageMethodUnknown, "VM.frobnicate")},
		{"unknown method with a bad session", "VM.frobnicate", []any{"OpaqueRef:bad"}, failWith(errSessionInvalid, "OpaqueRef:bad")},
		{"unknown method with a good session", "Async.VM.frobnicate", []any{c.session}, failWith(errMessageMethodUnknown, "VM.frobnicate")},
		{"too few params (session not counted)", "VM.start", []any{c.session, vm}, failWith(errMessageParameterCountMismatch, "VM.start", "3", "1")},
		{"too many params", "VM.get_record", []any{c.session, vm, "x"}, failWith(errMessageParameterCountMismatch, "VM.get_record", "1", "2")},
		{"arity is checked before the session", "VM.get_record", []any{"OpaqueRef:bad"}, failWith(errMessageParameterCountMismatch, "VM.get_record", "1", "0")},
		{"bad session", "VM.get_all", []any{"OpaqueRef:bad"}, failWith(errSessionInvalid, "OpaqueRef:bad")},
		{"unknown ref", "VM.get_record", []any{c.session, "OpaqueRef:bad"}, failWith(errHandleInvalid, "VM", "OpaqueRef:bad")},
		{"unknown uuid", "VM.get_by_uuid", []any{c.session, "nope"}, failWith(errUUIDInvalid, "VM", "nope")},
		{"no async mode", "Async.VM.get_record", []any{c.session, vm}, failWith("Fault", "No async mode for this operation (rpc: VM.get_record)")},
		{"duplicate map key", "VM.add_to_other_config", []any{c.session, vm, "os-family", "x"}, failWith(errMapDuplicateKey, "VM", "other_config", vm, "os-family")},
		// gen_server.ml: a message removed from the API still matches its
		// arity and checks the session, then answers MESSAGE_REMOVED [],
		// before unmarshalling its other params and with or without Async.
		// (VDI.resize_online was removed in inverness; API 2.23 lacks it.)
		{"removed message", "VDI.resize_online", []any{c.session, "OpaqueRef:any", "x"}, failWith(errMessageRemoved)},
		{"removed message, Async", "Async.VDI.resize_online", []any{c.session, "OpaqueRef:any", "1"}, failWith(errMessageRemoved)},
		{"removed message, bad session", "VDI.resize_online", []any{"OpaqueRef:bad", "OpaqueRef:any", "1"}, failWith(errSessionInvalid, "OpaqueRef:bad")},
		{"removed message, wrong arity", "VDI.resize_online", []any{c.session, "OpaqueRef:any"}, failWith(errMessageParameterCountMismatch, "VDI.resize_online", "2", "1")},
		{"removed field getter", "VM.get_is_snapshot_from_vmpp", []any{c.session, vm}, failWith(errMessageRemoved)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, f := c.call(tc.method, tc.args...)
			g.Expect(f).To(tc.want)
		})
	}
	t.Run("alternative wire names", func(t *testing.T) {
		g := NewWithT(t)
		v, f := c.call("VM_get_name_label", c.session, vm)
		g.Expect(f).NotTo(HaveOccurred())
		g.Expect(v).To(Equal("Debian Bookworm 12"))
	})
	t.Run("defaulted params may be left out", func(t *testing.T) {
		g := NewWithT(t)
		host := c.must("host.get_all").([]any)[0]
		_, f := c.do("host.disable", host)
		g.Expect(f).NotTo(HaveOccurred())
		_, f = c.do("host.enable", host)
		g.Expect(f).NotTo(HaveOccurred())
	})
}

func TestJSONRPC(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL())
	post := func(body string) map[string]any {
		resp, out := c.post("/jsonrpc", "application/json", []byte(body))
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
		var m map[string]any
		g.Expect(json.Unmarshal(out, &m)).To(Succeed())
		return m
	}
	v1 := post(`{"method":"session.login_with_password","params":["root","xenserver"],"id":1}`)
	g.Expect(v1).To(HaveKeyWithValue("error", BeNil()))
	g.Expect(v1).To(HaveKeyWithValue("id", BeNumerically("==", 1)))
	session := v1["result"].(string)

	v1 = post(`{"method":"VM.get_record","params":["` + session + `","OpaqueRef:x"],"id":"a"}`)
	g.Expect(v1).To(HaveKeyWithValue("result", BeNil()))
	g.Expect(v1).To(HaveKeyWithValue("error", Equal([]any{"HANDLE_INVALID", "VM", "OpaqueRef:x"})))

	v2 := post(`{"jsonrpc":"2.0","method":"VM.get_all_records","params":["` + session + `"],"id":2}`)
	g.Expect(v2).To(HaveKeyWithValue("jsonrpc", "2.0"))
	for _, rec := range v2["result"].(map[string]any) {
		r := rec.(map[string]any)
		g.Expect(r["memory_static_max"]).To(BeAssignableToTypeOf(float64(0)), "ints are JSON numbers")
		g.Expect(r["snapshot_time"]).To(Equal("19700101T00:00:00Z"), "datetimes are xapi's string")
		g.Expect(r["is_a_template"]).To(BeAssignableToTypeOf(true))
	}

	v2 = post(`{"jsonrpc":"2.0","method":"VM.get_record","params":["` + session + `","OpaqueRef:x"],"id":3}`)
	g.Expect(v2).To(HaveKeyWithValue("error", Equal(map[string]any{"code": float64(1), "message": "HANDLE_INVALID", "data": []any{"VM", "OpaqueRef:x"}})))

	By := "a session from JSON-RPC works over XML-RPC"
	_, f := c.withSession(session).do("VM.get_all")
	g.Expect(f).NotTo(HaveOccurred(), By)

	resp, _ := c.post("/jsonrpc", "application/json", []byte(`{"method":"VM.get_all","params":[],"id":null}`))
	g.Expect(resp.StatusCode).To(Equal(500), "a null id is refused")
	g.Expect(strings.Contains(resp.Header.Get("Content-Type"), "html")).To(BeTrue())
}
