package xenapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"time"
)

// errUnauthorized is xapi's HTTP 401 for a handler call whose session it
// does not accept (xapi_http.ml): log in again and retry.
var errUnauthorized = errors.New("xenapi: the HTTP handler refused the session (401)")

// maxRedirects bounds the redirects one transfer follows (xapi redirects
// once, to the host that reaches the disk's SR).
const maxRedirects = 3

// ImportRawVDI writes data at the start of a VDI through xapi's HTTP
// handler, as xapi's clients (XenCenter, Xen Orchestra) do: a task created
// for the transfer, PUT /import_raw_vdi?session_id=&vdi=&format=raw&task_id=,
// a redirect followed to the host that reaches the disk's SR (the body sent
// again), the task's outcome as the result, the task destroyed. It takes
// one of the endpoint's operation slots.
func (c *Client) ImportRawVDI(ctx context.Context, vdi string, data []byte) error {
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	stale := ""
	for attempt := 0; ; attempt++ {
		ref, base, err := c.sessionRef(ctx, stale)
		if err != nil {
			return err
		}
		task, err := do[string](ctx, c, "task.create", "import_raw_vdi", "xen-operator: write a disk")
		if err != nil {
			return err
		}
		err = c.putRaw(ctx, base, ref, vdi, task, data)
		if err == nil {
			err = c.taskOutcome(ctx, task)
		}
		if _, derr := do[string](ctx, c, "task.destroy", task); derr != nil && !IsHandleInvalid(derr) {
			c.log.V(1).Info("Destroying a task failed", "task", task, "error", derr.Error())
		}
		if errors.Is(err, errUnauthorized) && attempt == 0 {
			stale = ref
			continue
		}
		return err
	}
}

// putRaw sends the PUT.
func (c *Client) putRaw(ctx context.Context, base, session, vdi, task string, data []byte) error {
	_, err := c.rawTransfer(ctx, http.MethodPut, "/import_raw_vdi", base,
		neturl.Values{"session_id": {session}, "vdi": {vdi}, "format": {"raw"}, "task_id": {task}}, data)
	return err
}

// ExportRawVDI reads a VDI's content through xapi's GET /export_raw_vdi
// handler (format raw), following its redirect to the host that reaches
// the disk's SR.
func (c *Client) ExportRawVDI(ctx context.Context, vdi string) ([]byte, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	stale := ""
	for attempt := 0; ; attempt++ {
		ref, base, err := c.sessionRef(ctx, stale)
		if err != nil {
			return nil, err
		}
		data, err := c.rawTransfer(ctx, http.MethodGet, "/export_raw_vdi", base,
			neturl.Values{"session_id": {ref}, "vdi": {vdi}, "format": {"raw"}}, nil)
		if errors.Is(err, errUnauthorized) && attempt == 0 {
			stale = ref
			continue
		}
		return data, err
	}
}

// rawTransfer calls one of xapi's disk HTTP handlers, following redirects
// itself: Go's client would turn a PUT redirected with 302 into a GET
// without its body. It returns the body of a GET.
func (c *Client) rawTransfer(ctx context.Context, method, path, base string, query neturl.Values, data []byte) ([]byte, error) {
	u, err := neturl.Parse(base)
	if err != nil {
		return nil, err
	}
	u.Path, u.RawQuery = path, query.Encode()
	hc := *c.rpc.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	target := u.String()
	for range maxRedirects + 1 {
		var body io.Reader
		if data != nil {
			body = bytes.NewReader(data)
		}
		req, err := http.NewRequestWithContext(ctx, method, target, body)
		if err != nil {
			return nil, err
		}
		req.ContentLength = int64(len(data))
		resp, err := hc.Do(req)
		if err != nil {
			return nil, &ConnectionError{Endpoint: c.rpc.endpoint, Err: unwrapURLError(err)}
		}
		out, next, err := transferResponse(resp, path)
		if next == "" {
			return out, err
		}
		target = next
	}
	return nil, fmt.Errorf("xenapi: %s: more than %d redirects", path, maxRedirects)
}

// transferResponse reads a handler's answer: the body of a 200, the
// location of a redirect, or the error.
func transferResponse(resp *http.Response, path string) ([]byte, string, error) {
	defer func() { _ = resp.Body.Close() }()
	switch {
	case resp.StatusCode == http.StatusOK:
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		return data, "", err
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, "", errUnauthorized
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		next, err := resp.Location()
		if err != nil {
			return nil, "", fmt.Errorf("xenapi: %s: redirect without a location: %w", path, err)
		}
		return nil, next.String(), nil
	}
	return nil, "", fmt.Errorf("xenapi: %s: HTTP %s", path, resp.Status)
}

// taskOutcome waits for a task the caller created to end (xapi's handler
// ends it before answering; a short wait covers a slower one) and returns
// its outcome.
func (c *Client) taskOutcome(ctx context.Context, ref string) error {
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		t, err := c.Task(ctx, ref)
		if err != nil {
			return err
		}
		if t.Status != TaskPending {
			return taskError(t)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
