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
// call on a client; kolo encodes the call, and the answer is decoded as it
// streams in (decode.go).
type rpc struct {
	http    *http.Client
	metrics *metrics
	// endpoint names the endpoint in errors: the site of the XenHost's
	// address (siteOf), not the coordinator it was redirected to.
	endpoint string
	// label is the endpoint's metrics label (labelOf).
	label string
}

// call invokes method at url and decodes its Value into a T.
func call[T any](ctx context.Context, r *rpc, url, method string, args ...any) (T, error) {
	var v T
	err := callWith(ctx, r, url, method, valueInto(&v), args...)
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// valueInto decodes a response's Value into *v, from its zero value.
func valueInto[T any](v *T) func(*scanner) error {
	return func(s *scanner) error {
		var zero T
		*v = zero
		return decodeValue(s, v)
	}
}

// callWith invokes method at url; value decodes the response's Value as it
// is read.
func callWith(ctx context.Context, r *rpc, url, method string, value func(*scanner) error, args ...any) error {
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
		body := io.LimitReader(resp.Body, maxResponse)
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, body)
			return fmt.Sprintf("HTTP_%d", resp.StatusCode),
				&ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("%s: HTTP %s", method, resp.Status)}
		}
		code, err := r.readResponse(method, body, value)
		if ce := (*ConnectionError)(nil); !errors.As(err, &ce) {
			// Read the rest (nothing, from xapi), for the connection to be used again.
			if _, cerr := io.Copy(io.Discard, body); cerr != nil && err == nil {
				return "CONNECTION", &ConnectionError{Endpoint: r.endpoint, Err: cerr}
			}
		}
		return code, err
	}()
	r.metrics.observeCall(r.label, method, code, time.Since(start))
	return err
}

// readResponse decodes xapi's Status/Value/ErrorDescription response from
// body, value decoding the Value, and returns the call's metrics code with
// its error: *Error for a Failure, a ConnectionError if the body cannot be
// read or decoded.
func (r *rpc) readResponse(method string, body io.Reader, value func(*scanner) error) (string, error) {
	s := newScanner(body)
	defer s.free()
	status, desc, err := s.envelope(value)
	if err != nil {
		if re := (*readError)(nil); errors.As(err, &re) {
			return "CONNECTION", &ConnectionError{Endpoint: r.endpoint, Err: re.err}
		}
		return "DECODE", &ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("%s: decoding the response: %w", method, err)}
	}
	switch status {
	case "Success":
		return "SUCCESS", nil
	case "Failure":
		xe := &Error{Method: method}
		if len(desc) > 0 {
			xe.Code, xe.Params = desc[0], desc[1:]
		}
		return xe.Code, xe
	default:
		return "DECODE", &ConnectionError{Endpoint: r.endpoint, Err: fmt.Errorf("%s: response without a Status", method)}
	}
}

// decodeValueText decodes the XML-RPC value text xapi keeps in task.result,
// e.g. "<value>OpaqueRef:...</value>".
func decodeValueText[T any](text string) (T, error) {
	var v T
	s := newBytesScanner([]byte(text))
	if err := s.expect(tokStart, "value"); err != nil {
		return v, err
	}
	err := decodeValue(s, &v)
	return v, err
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
