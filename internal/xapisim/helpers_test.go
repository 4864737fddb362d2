package xapisim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// newSim starts a simulator for one test and stops it when the test ends.
func newSim(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.AuthFailureDelay == 0 {
		cfg.AuthFailureDelay = time.Millisecond
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// rawClient speaks XML-RPC by hand, so that tests see xapi's bytes.
type rawClient struct {
	t       testing.TB
	url     string
	session string
	http    *http.Client
}

func newClient(t testing.TB, url string) *rawClient {
	return &rawClient{t: t, url: url, http: &http.Client{Timeout: 30 * time.Second}}
}

// login logs in as root and keeps the session.
func (c *rawClient) login() *rawClient {
	c.t.Helper()
	v, f := c.call("session.login_with_password", "root", "xenserver", "1.0", "xapisim-test")
	if f != nil {
		c.t.Fatalf("login: %v", f)
	}
	c.session = v.(string)
	return c
}

// encodeArg writes a Go value as an XML-RPC value, the way common clients do:
// strings as <string>, ints as <int>, bools as <boolean>.
func encodeArg(b *bytes.Buffer, v any) {
	b.WriteString("<value>")
	switch x := v.(type) {
	case string:
		b.WriteString("<string>")
		_ = xml.EscapeText(b, []byte(x))
		b.WriteString("</string>")
	case int:
		fmt.Fprintf(b, "<int>%d</int>", x)
	case int64:
		fmt.Fprintf(b, "<int>%d</int>", x)
	case float64:
		fmt.Fprintf(b, "<double>%v</double>", x)
	case bool:
		if x {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case []string:
		b.WriteString("<array><data>")
		for _, e := range x {
			encodeArg(b, e)
		}
		b.WriteString("</data></array>")
	case map[string]string:
		b.WriteString("<struct>")
		for k, e := range x {
			fmt.Fprintf(b, "<member><name>%s</name>", k)
			encodeArg(b, e)
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	case map[string]any:
		b.WriteString("<struct>")
		for k, e := range x {
			fmt.Fprintf(b, "<member><name>%s</name>", k)
			encodeArg(b, e)
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	case rawXML:
		b.WriteString(string(x))
	default:
		panic(fmt.Sprintf("cannot encode %T", v))
	}
	b.WriteString("</value>")
}

// rawXML is inserted into a <value> as it is.
type rawXML string

func methodCall(method string, args ...any) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?><methodCall><methodName>`)
	b.WriteString(method)
	b.WriteString("</methodName><params>")
	for _, a := range args {
		b.WriteString("<param>")
		encodeArg(&b, a)
		b.WriteString("</param>")
	}
	b.WriteString("</params></methodCall>")
	return b.Bytes()
}

// post sends a body and returns the response.
func (c *rawClient) post(path, contentType string, body []byte) (*http.Response, []byte) {
	c.t.Helper()
	resp, err := c.http.Post(c.url+path, contentType, bytes.NewReader(body))
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	return resp, out
}

// callNoSession calls method with exactly args.
func (c *rawClient) call(method string, args ...any) (any, *Failure) {
	c.t.Helper()
	_, body := c.post("/", "text/xml", methodCall(method, args...))
	return decodeResponse(c.t, body)
}

// do calls method with the client's session first.
func (c *rawClient) do(method string, args ...any) (any, *Failure) {
	c.t.Helper()
	return c.call(method, append([]any{c.session}, args...)...)
}

// must calls method with the session and fails the test on a XenAPI error.
func (c *rawClient) must(method string, args ...any) any {
	c.t.Helper()
	v, f := c.do(method, args...)
	if f != nil {
		c.t.Fatalf("%s: %v", method, f)
	}
	return v
}

// decodeResponse parses xapi's envelope into a value or a failure.
func decodeResponse(t testing.TB, body []byte) (any, *Failure) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("no value in response %s: %v", body, err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "value" {
			v, err := parseXMLValue(d)
			if err != nil {
				t.Fatalf("bad response %s: %v", body, err)
			}
			env, ok := v.(map[string]any)
			if !ok {
				return v, nil // bare (system.listMethods)
			}
			if env["Status"] == "Success" {
				return env["Value"], nil
			}
			desc := env["ErrorDescription"].([]any)
			f := &Failure{Code: desc[0].(string)}
			for _, p := range desc[1:] {
				f.Params = append(f.Params, p.(string))
			}
			return nil, f
		}
	}
}

// failWith matches a *Failure with the code and, when given, the params.
func failWith(code string, params ...string) OmegaMatcher {
	if params == nil {
		return And(Not(BeNil()), WithTransform(func(f *Failure) string { return f.Code }, Equal(code)))
	}
	return And(Not(BeNil()), WithTransform(func(f *Failure) []string {
		return append([]string{f.Code}, f.Params...)
	}, Equal(append([]string{code}, params...))))
}

// vmByName returns the ref of the only VM named name.
func (c *rawClient) vmByName(name string) string {
	c.t.Helper()
	return c.refByName("VM", name)
}

// refByName returns the ref of the only object of class named name.
func (c *rawClient) refByName(class, name string) string {
	c.t.Helper()
	refs := c.must(class+".get_by_name_label", name).([]any)
	if len(refs) != 1 {
		c.t.Fatalf("%d %s objects named %q", len(refs), class, name)
	}
	return refs[0].(string)
}

// field reads one field of an object's record.
func (c *rawClient) field(class, ref, name string) any {
	c.t.Helper()
	return c.must(class+".get_record", ref).(map[string]any)[name]
}

// install clones a template and provisions it on the default SR, as the
// operator does; it returns the new VM's ref.
func (c *rawClient) install(template, name string) string {
	c.t.Helper()
	vm := c.must("VM.clone", c.vmByName(template), name).(string)
	pools := c.must("pool.get_all").([]any)
	srRef := c.must("pool.get_default_SR", pools[0]).(string)
	srUUID := c.must("SR.get_uuid", srRef).(string)
	disks := c.must("VM.get_other_config", vm).(map[string]any)["disks"].(string)
	c.must("VM.remove_from_other_config", vm, "disks")
	c.must("VM.add_to_other_config", vm, "disks", strings.ReplaceAll(disks, `sr=""`, `sr="`+srUUID+`"`))
	c.must("VM.provision", vm)
	return vm
}

// createVIF creates a VIF on vm with the given device on the named network,
// letting xapi derive its MAC, and returns its ref.
func (c *rawClient) createVIF(vm, network, device string) string {
	c.t.Helper()
	return c.must("VIF.create", vifRecord(vm, c.refByName("network", network), device)).(string)
}

// vifRecord is the record VIF.create takes, with every field it requires.
func vifRecord(vm, network, device string) map[string]any {
	return map[string]any{
		"device": device, "network": network, "VM": vm, "MAC": "", "MTU": "1500",
		"other_config": map[string]string{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]string{},
	}
}
