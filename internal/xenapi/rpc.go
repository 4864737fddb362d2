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

	"github.com/kolo/xmlrpc"
)

// maxResponse bounds a response body (get_all_records of a big pool is tens of MB).
const maxResponse = 512 << 20

// rpc performs XML-RPC calls on one endpoint. It does the HTTP round trip
// itself rather than through kolo's net/rpc client, which serialises every
// call on a client; kolo encodes the call and decodes the answer.
type rpc struct {
	http    *http.Client
	metrics *metrics
	// endpoint names the endpoint in errors: the site of the XenHost's
	// address (siteOf), not the coordinator it was redirected to.
	endpoint string
	// label is the endpoint's metrics label (labelOf).
	label string
}

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

// call invokes method at url and decodes its Value into a T.
func call[T any](ctx context.Context, r *rpc, url, method string, args ...any) (T, error) {
	return callBody[T](ctx, r, nil, url, method, args...)
}

// callBody is call that also hands back the raw response body when body is
// not nil.
func callBody[T any](ctx context.Context, r *rpc, body *[]byte, url, method string, args ...any) (T, error) {
	var zero T
	start := time.Now()
	code, err := func() (string, error) {
		reqBody, err := xmlrpc.EncodeMethodCall(method, args...)
		if err != nil {
			return "ENCODE", fmt.Errorf("xenapi %s: encoding the call: %w", method, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(reqBody))
		if err != nil {
			return "ENCODE", &ConnectionError{Endpoint: r.endpoint, Err: err}
		}
		req.Header.Set("Content-Type", "text/xml")
		resp, err := r.http.Do(req)
		if err != nil {
			return "CONNECTION", &ConnectionError{Endpoint: r.endpoint, Err: unwrapURLError(err)}
		}
		defer func() { _ = resp.Body.Close() }()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		if err != nil {
			return "CONNECTION", &ConnectionError{Endpoint: r.endpoint, Err: err}
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("HTTP_%d", resp.StatusCode),
				&ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("%s: HTTP %s", method, resp.Status)}
		}
		raw = fixEmptyValues(raw)
		if body != nil {
			*body = raw
		}
		var env envelope[T]
		if err := xmlrpc.Response(raw).Unmarshal(&env); err != nil {
			return "DECODE", &ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("%s: decoding the response: %w", method, err)}
		}
		switch env.Status {
		case "Success":
			zero = env.Value
			return "SUCCESS", nil
		case "Failure":
			xe := &Error{Method: method}
			if len(env.ErrorDescription) > 0 {
				xe.Code, xe.Params = env.ErrorDescription[0], env.ErrorDescription[1:]
			}
			return xe.Code, xe
		default:
			return "DECODE", &ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("%s: response without a Status", method)}
		}
	}()
	r.metrics.observeCall(r.label, method, code, time.Since(start))
	return zero, err
}

// decodeValueText decodes the XML-RPC value text xapi keeps in task.result,
// e.g. "<value>OpaqueRef:...</value>".
func decodeValueText[T any](text string) (T, error) {
	var out struct {
		V T
	}
	doc := `<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>V</name>` +
		text + `</member></struct></value></param></params></methodResponse>`
	err := xmlrpc.Response(fixEmptyValues([]byte(doc))).Unmarshal(&out)
	return out.V, err
}

// unwrapURLError keeps the cause of a url.Error: its message repeats the
// whole URL, which for a disk transfer carries the session.
func unwrapURLError(err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
