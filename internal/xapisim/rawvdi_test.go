package xapisim

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// rawURL is the URL of a raw VDI transfer on base with the given query.
func rawURL(base, path string, query map[string]string) string {
	q := url.Values{}
	for k, v := range query {
		q.Set(k, v)
	}
	return base + path + "?" + q.Encode()
}

// noRedirect is an HTTP client that shows redirects instead of following
// them (Go's client would turn a redirected PUT into a GET without body).
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// transfer sends a raw transfer request and reads the whole response.
func transfer(t testing.TB, method, u string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return resp, out
}

// putRaw imports data into vdi through base, with task_id when task is
// not empty.
func (c *rawClient) putRaw(base, vdi, task string, data []byte) (*http.Response, []byte) {
	c.t.Helper()
	q := map[string]string{"session_id": c.session, "vdi": vdi, "format": "raw"}
	if task != "" {
		q["task_id"] = task
	}
	return transfer(c.t, http.MethodPut, rawURL(base, "/import_raw_vdi", q), bytes.NewReader(data))
}

// getRaw exports vdi through base.
func (c *rawClient) getRaw(base, vdi, task string) (*http.Response, []byte) {
	c.t.Helper()
	q := map[string]string{"session_id": c.session, "vdi": vdi, "format": "raw"}
	if task != "" {
		q["task_id"] = task
	}
	return transfer(c.t, http.MethodGet, rawURL(base, "/export_raw_vdi", q), nil)
}

// TestImportAndExportRawVDI checks the round trip as xapi serves it: the
// 200 with Connection: close and the task-id header, the client's task
// ending success with the VDI ref as result (import) or "" (export), the
// bytes back with zeros up to the virtual size, a thin SR's disk growing by
// the VHD blocks written and no task left behind by a transfer without
// task_id.
func TestImportAndExportRawVDI(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	sr := c.srRef(srNFS)
	vdi := c.must("VDI.create", vdiRecord(sr, 4*mib)).(string)
	physBefore := c.field("VDI", vdi, "physical_utilisation").(string)
	srBefore := c.field("SR", sr, "physical_utilisation").(string)
	data := bytes.Repeat([]byte("cidata!"), 100000) // 700 000 bytes: one VHD block

	task := c.must("task.create", "upload", "").(string)
	resp, _ := c.putRaw(s.URL(), vdi, task, data)
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get("Task-Id")).To(Equal(task))
	g.Expect(resp.Close).To(BeTrue(), "Connection: close")
	rec := c.must("task.get_record", task).(map[string]any)
	g.Expect(rec).To(HaveKeyWithValue("status", "success"))
	g.Expect(rec).To(HaveKeyWithValue("result", "<value>"+vdi+"</value>"))
	g.Expect(rec).To(HaveKeyWithValue("progress", 1.0))

	g.Expect(c.field("VDI", vdi, "physical_utilisation")).To(Equal(fmtInt(parseInt(physBefore) + 2*mib + 512)))
	g.Expect(c.field("SR", sr, "physical_utilisation")).To(Equal(fmtInt(parseInt(srBefore) + 2*mib + 512)))

	tasks := len(c.must("task.get_all").([]any))
	resp, body := c.getRaw(s.URL(), vdi, "")
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/octet-stream"))
	uuid := c.must("VDI.get_uuid", vdi).(string)
	g.Expect(resp.Header.Get("Content-Disposition")).To(Equal(`attachment; filename="` + uuid + `.raw"`))
	g.Expect(resp.TransferEncoding).To(BeEmpty(), "the body runs to the connection's close")
	g.Expect(resp.ContentLength).To(BeEquivalentTo(-1))
	g.Expect(body).To(HaveLen(int(4 * mib)))
	g.Expect(body[:len(data)]).To(Equal(data))
	g.Expect(allZero(body[len(data):])).To(BeTrue())
	g.Expect(c.must("task.get_all").([]any)).To(HaveLen(tasks), "the handler's own task is destroyed")

	exportTask := c.must("task.create", "download", "").(string)
	resp, _ = c.getRaw(s.URL(), uuid, exportTask) // a uuid serves as well as a ref
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	rec = c.must("task.get_record", exportTask).(map[string]any)
	g.Expect(rec).To(HaveKeyWithValue("status", "success"))
	g.Expect(rec).To(HaveKeyWithValue("result", ""))
}

// TestImportRawVDIOnThickSRKeepsItsSize checks that a write leaves a thick
// LVM disk's utilisation as it is.
func TestImportRawVDIOnThickSRKeepsItsSize(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vdi := c.must("VDI.create", vdiRecord(c.srRef(srLocal), 4*mib)).(string)
	phys := c.field("VDI", vdi, "physical_utilisation")
	resp, _ := c.putRaw(s.URL(), vdi, "", []byte("hello"))
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(c.field("VDI", vdi, "physical_utilisation")).To(Equal(phys))
	_, body := c.getRaw(s.URL(), vdi, "")
	g.Expect(string(body[:5])).To(Equal("hello"))
}

// TestImportRawVDILargerThanTheDisk checks xapi's failure on a body larger
// than the virtual size: the 200 is already out, vhd-tool fails on the write
// past the end, the task fails with VDI_IO_ERROR ["Device I/O errors"] and
// what fitted was written.
func TestImportRawVDILargerThanTheDisk(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vdi := c.must("VDI.create", vdiRecord(c.srRef(srNFS), 2*mib)).(string)
	data := bytes.Repeat([]byte{0xab}, int(2*mib+1))
	task := c.must("task.create", "upload", "").(string)
	resp, _ := c.putRaw(s.URL(), vdi, task, data)
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	rec := c.must("task.get_record", task).(map[string]any)
	g.Expect(rec).To(HaveKeyWithValue("status", "failure"))
	g.Expect(rec).To(HaveKeyWithValue("error_info", []any{"VDI_IO_ERROR", "Device I/O errors"}))
	_, body := c.getRaw(s.URL(), vdi, "")
	g.Expect(body).To(Equal(data[:2*mib]))
}

// TestRawVDISessionCheck checks assert_credentials_ok: no session or one
// that is not live is HTTP 401 with xapi's realm, and the client's task is
// left as it was.
func TestRawVDISessionCheck(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vdi := c.must("VDI.create", vdiRecord(c.srRef(srNFS), 2*mib)).(string)
	task := c.must("task.create", "upload", "").(string)
	for _, session := range []string{"", "OpaqueRef:00000000-0000-0000-0000-000000000000"} {
		q := map[string]string{"vdi": vdi, "task_id": task}
		if session != "" {
			q["session_id"] = session
		}
		resp, body := transfer(t, http.MethodPut, rawURL(s.URL(), "/import_raw_vdi", q), strings.NewReader("x"))
		g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
		g.Expect(resp.Header.Get("WWW-Authenticate")).To(Equal(`Basic realm="VDI.import"`))
		g.Expect(string(body)).To(ContainSubstring("HTTP 401 unauthorised"))
		resp, _ = transfer(t, http.MethodGet, rawURL(s.URL(), "/export_raw_vdi", q), nil)
		g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
		g.Expect(resp.Header.Get("WWW-Authenticate")).To(Equal(`Basic realm="VDI.export_raw"`))
	}
	g.Expect(c.must("task.get_status", task)).To(Equal("pending"))
}

// TestRawVDIRedirectsToTheHostThatSeesTheSR checks the 302 to the host
// whose local SR holds the disk, with the same path and query, and that the
// transfer then works there.
func TestRawVDIRedirectsToTheHostThatSeesTheSR(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	second := s.hosts[1].obj.ref
	var local string
	for _, sr := range c.must("SR.get_by_name_label", srLocal).([]any) {
		pbds := c.must("SR.get_PBDs", sr).([]any)
		if c.must("PBD.get_host", pbds[0]) == second {
			local = sr.(string)
		}
	}
	vdi := c.must("VDI.create", vdiRecord(local, 2*mib)).(string)
	task := c.must("task.create", "upload", "").(string)
	q := map[string]string{"session_id": c.session, "vdi": vdi, "format": "raw", "task_id": task}
	u := rawURL(s.URL(), "/import_raw_vdi", q)
	resp, _ := transfer(t, http.MethodPut, u, strings.NewReader("data"))
	g.Expect(resp.StatusCode).To(Equal(http.StatusFound))
	g.Expect(resp.Header.Get("Location")).To(Equal(rawURL(s.URLs()[1], "/import_raw_vdi", q)))
	g.Expect(c.must("task.get_status", task)).To(Equal("pending"), "the redirect leaves the task alone")

	resp, _ = transfer(t, http.MethodPut, resp.Header.Get("Location"), strings.NewReader("data"))
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(c.must("task.get_status", task)).To(Equal("success"))

	resp, _ = c.getRaw(s.URL(), vdi, "")
	g.Expect(resp.StatusCode).To(Equal(http.StatusFound))
	_, body := c.getRaw(s.URLs()[1], vdi, "")
	g.Expect(string(body[:4])).To(Equal("data"))
}

// TestRawVDIRefusals checks the requests xapi refuses once the session is
// good: an unknown VDI (500), an unknown or unmodelled format (404, task
// failed with INTERNAL_ERROR), a chunked body (404), no vdi on import (400,
// VDI_MISSING); a POST on the path is an XML-RPC call.
func TestRawVDIRefusals(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	vdi := c.must("VDI.create", vdiRecord(c.srRef(srNFS), 2*mib)).(string)
	put := func(q map[string]string, body io.Reader) (int, any) {
		task := c.must("task.create", "upload", "").(string)
		q["session_id"], q["task_id"] = c.session, task
		resp, _ := transfer(t, http.MethodPut, rawURL(s.URL(), "/import_raw_vdi", q), body)
		return resp.StatusCode, c.must("task.get_error_info", task)
	}
	code, _ := put(map[string]string{"vdi": "no-such-vdi"}, strings.NewReader("x"))
	g.Expect(code).To(Equal(http.StatusInternalServerError))
	code, info := put(map[string]string{"vdi": vdi, "format": "iso"}, strings.NewReader("x"))
	g.Expect(code).To(Equal(http.StatusNotFound))
	g.Expect(info).To(Equal([]any{"INTERNAL_ERROR", "Unknown format iso"}))
	code, info = put(map[string]string{"vdi": vdi}, io.MultiReader(strings.NewReader("x")))
	g.Expect(code).To(Equal(http.StatusNotFound))
	g.Expect(info).To(Equal([]any{"INTERNAL_ERROR", "Cannot handle encoding: chunked"}))
	code, info = put(map[string]string{}, strings.NewReader("x"))
	g.Expect(code).To(Equal(http.StatusBadRequest))
	g.Expect(info).To(Equal([]any{"VDI_MISSING"}))

	_, body := c.post("/import_raw_vdi", "text/xml", methodCall("session.get_this_host", c.session, c.session))
	v, f := decodeResponse(t, body)
	g.Expect(f).NotTo(HaveOccurred())
	g.Expect(v).To(Equal(s.hosts[0].obj.ref))
}
