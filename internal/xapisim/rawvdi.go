package xapisim

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"strings"
)

// The raw VDI transfer handlers: PUT /import_raw_vdi and GET
// /export_raw_vdi (xen-api ocaml/xapi-consts/constants.ml, bound in
// ocaml/xapi/xapi.ml as put_import_raw_vdi and get_export_raw_vdi;
// ocaml/xapi/import_raw_vdi.ml, export_raw_vdi.ml, xapi_http.ml,
// importexport.ml, vhd_tool_wrapper.ml, libs/http-lib/http_svr.ml).

// rawTransfer is one raw VDI transfer being served.
type rawTransfer struct {
	s *Server
	h *simHost
	w http.ResponseWriter
	r *http.Request
	// realm is the handler's name in its 401 (assert_credentials_ok), label
	// the name of the task with_context makes when the client gives none.
	realm, label string
	vdi          *object
	// task is the client's (task_id) or, when own, the handler's, which
	// with_context destroys when the transfer ends.
	task *object
	own  bool
}

// rawHandler serves path's method with serve once the session, the VDI and
// the SR's reachability are checked; other methods go to next, as xapi's
// per-method longest-prefix match sends them to its other handlers
// (http_svr.ml handle_one: a POST /import_raw_vdi is XML-RPC on /).
func (s *Server) rawHandler(h *simHost, method, realm, label string, serve func(*rawTransfer),
	next http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			next.ServeHTTP(w, r)
			return
		}
		t := &rawTransfer{s: s, h: h, w: w, r: r, realm: realm, label: label}
		if !t.begin() {
			return
		}
		defer t.end()
		serve(t)
	}
}

// cookieFirst is xapi_http.ml lookup_param_of_req: a cookie, else the query
// parameter (session_id, task_id).
func cookieFirst(r *http.Request, name string) (string, bool) {
	if c, err := r.Cookie(name); err == nil {
		return c.Value, true
	}
	return queryFirst(r, name)
}

// queryFirst is how importexport.ml reads vdi and format: the query
// parameter, else a cookie.
func queryFirst(r *http.Request, name string) (string, bool) {
	if q := r.URL.Query(); q.Has(name) {
		return q.Get(name), true
	}
	if c, err := r.Cookie(name); err == nil {
		return c.Value, true
	}
	return "", false
}

// begin checks what xapi checks before the transfer, in its order, and
// answers the request itself when one fails (it returns false then):
// assert_credentials_ok (a session_id that is not a live session, or none,
// is HTTP 401: Basic auth and client certificates are not modelled), the
// VDI (vdi_of_req), then whether this host sees the VDI's SR (else a 302 to
// one that does). On success the task is chosen (with_context).
func (t *rawTransfer) begin() bool {
	s := t.s
	s.mu.Lock()
	defer s.unlock()
	ref, _ := cookieFirst(t.r, "session_id")
	session, ok := s.db.get("session", ref)
	if !ok {
		unauthorised(t.w, t.realm)
		return false
	}
	if t.vdi = t.lookupVDI(); t.vdi == nil {
		return false
	}
	if !t.redirectUnlessReachable() {
		return false
	}
	s.touchSession(session)
	if id, given := cookieFirst(t.r, "task_id"); given {
		t.task, _ = s.db.get("task", id)
		return true
	}
	t.task, t.own = s.newTask(t.label, session), true
	return true
}

// end destroys the handler's own task (Context.finally_destroy_context).
func (t *rawTransfer) end() {
	if !t.own {
		return
	}
	t.s.mu.Lock()
	defer t.s.unlock()
	if _, alive := t.s.db.get("task", t.task.ref); alive {
		t.s.db.destroy(t.task)
	}
}

// lookupVDI is importexport.ml vdi_of_req: a VDI ref, else a VDI uuid. An
// unknown one raises Db_exn.Read_missing_uuid out of the handler, which
// http_svr.ml answers with HTTP 500 (the client's task is not touched).
// Without a vdi parameter, export fails ("Missing vdi query parameter",
// HTTP 500) and import, having no SR either (sr_id and sr_uuid are not
// modelled), fails the client's task with VDI_MISSING and answers HTTP 400.
func (t *rawTransfer) lookupVDI() *object {
	s := t.s
	v, given := queryFirst(t.r, "vdi")
	if !given {
		if t.realm == realmImport {
			t.failClientTask(newFailure(errVDIMissing))
			headersOnly(t.w, http.StatusBadRequest, nil)
			return nil
		}
		serverError(t.w, `Failure("Missing vdi query parameter")`)
		return nil
	}
	if vdi, ok := s.db.get("VDI", v); ok {
		return vdi
	}
	for _, vdi := range s.db.all("VDI") {
		if vdi.str("uuid") == v {
			return vdi
		}
	}
	serverError(t.w, fmt.Sprintf(`Db_exn.Read_missing_uuid("VDI", "", %q)`, v))
	return nil
}

// failClientTask fails the task the client named in task_id, if any, as
// import_raw_vdi.ml fail_task_in_request does.
func (t *rawTransfer) failClientTask(f *Failure) {
	if id, given := cookieFirst(t.r, "task_id"); given {
		if task, ok := t.s.db.get("task", id); ok {
			t.s.failTask(task, f)
		}
	}
}

// redirectUnlessReachable is the reachability check of import and
// export_raw (importexport.ml check_sr_availability: a plugged PBD of the
// SR on this host); when this host cannot see the SR, find_host_for_sr
// picks one that can and return_302_redirect answers HTTP 302 with
// Location the same path and query on that host's address. xapi's Location
// is always https://<address><path>?<query> on the default port; the
// simulator's hosts share one port and may serve plain HTTP, so its
// Location carries the simulator's scheme and port. No host that sees the
// SR is NO_HOSTS_AVAILABLE: import fails the client's task and answers 400,
// export answers 500.
func (t *rawTransfer) redirectUnlessReachable() bool {
	s := t.s
	sr, ok := s.db.get("SR", t.vdi.str("SR"))
	if ok && s.hostSeesSR(t.h.obj, sr) {
		return true
	}
	for _, h := range s.hosts {
		if ok && s.hostSeesSR(h.obj, sr) {
			u := s.urlOf(h) + t.r.URL.EscapedPath()
			if t.r.URL.RawQuery != "" {
				u += "?" + t.r.URL.RawQuery
			}
			headersOnly(t.w, http.StatusFound, map[string]string{"Location": u})
			return false
		}
	}
	if t.realm == realmImport {
		t.failClientTask(newFailure(errNoHostsAvailable))
		headersOnly(t.w, http.StatusBadRequest, nil)
		return false
	}
	serverError(t.w, html.EscapeString(fmt.Sprintf(`Server_error(%s, [ ])`, errNoHostsAvailable)))
	return false
}

// hostSeesSR is Xapi_vm_helpers.assert_can_see_specified_SRs for one SR: a
// PBD of the SR on the host is plugged.
func (s *Server) hostSeesSR(host, sr *object) bool {
	for _, ref := range sr.set("PBDs") {
		if pbd, ok := s.db.get("PBD", ref.(string)); ok && pbd.str("host") == host.ref && pbd.bool("currently_attached") {
			return true
		}
	}
	return false
}

// format is Importexport.Format.of_req: format, raw by default,
// case-insensitive. An unknown one fails the task with INTERNAL_ERROR
// ["Unknown format <x>"] and answers HTTP 404; so, here, do the formats the
// simulator does not model (vhd, tar, qcow2).
func (t *rawTransfer) format() bool {
	f, given := queryFirst(t.r, "format")
	if !given || strings.EqualFold(f, "raw") {
		return true
	}
	switch strings.ToLower(f) {
	case "vhd", "tar", "qcow2":
		t.refuse(newFailure(errInternalError, "xapi-simulator does not model format "+f))
	default:
		t.refuse(newFailure(errInternalError, "Unknown format "+f))
	}
	return false
}

// refuse fails the transfer's task and answers HTTP 404 with no body
// (Http.http_404_missing).
func (t *rawTransfer) refuse(f *Failure) {
	t.s.mu.Lock()
	t.s.failTask(t.task, f)
	t.s.unlock()
	headersOnly(t.w, http.StatusNotFound, nil)
}

// failTask is TaskHelper.failed: a pending task ends in failure, progress
// 1, with the error.
func (s *Server) failTask(task *object, f *Failure) {
	if task == nil || task.str("status") != "pending" {
		return
	}
	if _, alive := s.db.get("task", task.ref); !alive {
		return
	}
	s.db.update(task, "progress", float64(1), "error_info", f.description(), "finished", now(),
		"allowed_operations", []any{}, "status", "failure")
}

// completeTask is TaskHelper.complete: a pending task succeeds with result
// (the XML-RPC text of the value, "" for none).
func (s *Server) completeTask(task *object, result string) {
	if task == nil || task.str("status") != "pending" {
		return
	}
	if _, alive := s.db.get("task", task.ref); !alive {
		return
	}
	s.db.update(task, "allowed_operations", []any{}, "finished", now(), "progress", float64(1),
		"result", result, "status", "success")
}

// setProgress is TaskHelper.set_progress, fed by vhd-tool's whole percents
// (vhd_tool_wrapper.ml update_task_progress).
func (t *rawTransfer) setProgress(done, total int64) {
	if t.task == nil || total <= 0 {
		return
	}
	p := float64(done*100/total) / 100
	t.s.mu.Lock()
	defer t.s.unlock()
	if t.task.str("status") == "pending" && t.task.fields["progress"] != p {
		t.s.db.update(t.task, "progress", p)
	}
}

// startBody sends the 200 headers before any data moves, as both handlers
// do (Http.http_200_ok ~keep_alive:false: the connection closes after the
// transfer, whose end the client learns from the task): Connection close,
// Cache-Control, task-id and the extra headers. The body, if any, runs to
// the connection's close (no length, no chunking).
func (t *rawTransfer) startBody(extra map[string]string) {
	hd := t.w.Header()
	hd.Set("Connection", "close")
	hd.Set("Cache-Control", "no-cache, no-store")
	hd.Set("Task-Id", t.task.ref)
	hd.Set("Transfer-Encoding", "identity")
	for k, v := range extra {
		hd.Set(k, v)
	}
	rc := http.NewResponseController(t.w)
	_ = rc.EnableFullDuplex()
	t.w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
}

const realmImport, realmExport = "VDI.import", "VDI.export_raw"

// unauthorised is http_svr.ml response_unauthorised.
func unauthorised(w http.ResponseWriter, realm string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", realm))
	htmlError(w, http.StatusUnauthorized,
		"<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials and retry.</body></html>")
}

// serverError is http_svr.ml response_internal_error for an exception
// escaping a handler, extra its (escaped) text.
func serverError(w http.ResponseWriter, extra string) {
	htmlError(w, http.StatusInternalServerError,
		"<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and try again. If the problem persists, please contact your support representative.<h1> Additional information </h1>"+
			extra+"</body></html>")
}

// htmlError is http_svr.ml response_error_html.
func htmlError(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/html")
	headersOnly(w, status, nil)
	_, _ = io.WriteString(w, body)
}

// headersOnly answers status with xapi's Connection: close and
// Cache-Control headers (Http.http_302_redirect, http_400_badrequest,
// http_404_missing).
func headersOnly(w http.ResponseWriter, status int, extra map[string]string) {
	w.Header().Set("Connection", "close")
	w.Header().Set("Cache-Control", "no-cache, no-store")
	for k, v := range extra {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
}
