package xenapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The responses are decoded in one pass over the stream by a small XML-RPC
// decoder, not by kolo: kolo needs the whole body in memory, drops the rest
// of a struct after an untyped empty value (xapi's every empty string), and
// cannot decode an event's snapshot into a type chosen by its class member.
//
// The decoder reads the subset of XML that XML-RPC uses: elements without
// namespaces (attributes are skipped), character data with the predefined
// and numeric entities, CDATA sections, comments and processing
// instructions. Values are decoded by the Go type of their target, with the
// same rules as kolo's: an untyped value or a <string> into a string, <int>,
// <i4> or <i8> into an int, <boolean>, <double> and <dateTime.iso8601> into
// a bool, a float and a time.Time, <array> into a slice, <struct> into a
// map with string keys or a struct whose fields are named by their xmlrpc
// tag (a member without a field is skipped), an empty typed value into
// nothing. Unlike kolo, an untyped value keeps its text as it is (XML-RPC's
// string), spaces included.

// tokKind is what scanner.next read.
type tokKind uint8

const (
	tokEOF tokKind = iota
	tokStart
	tokEnd
	tokText
)

// readError is a failure of the stream under the scanner (the connection),
// as opposed to a malformed response.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// scanner reads the XML of an XML-RPC response from a stream, one token at
// a time, keeping only a small window of it in memory.
type scanner struct {
	r        io.Reader
	buf      []byte
	pos, end int
	// off is the stream offset of buf[0], for error messages.
	off int64
	// rerr is the stream's error once it has one (io.EOF at its end).
	rerr error

	// name is the element name of the last start or end tag, text the
	// character data of the last text token, entities replaced.
	name []byte
	text []byte
	// val is the text of the scalar open last read.
	val []byte
	// pendingEnd: the last start tag was self-closing; next returns its end.
	pendingEnd bool
	// tagPos is where in buf the last tag began.
	tagPos int
	// capStart is where in buf the raw XML being captured continues, -1
	// when not capturing; captured holds what was shifted out of buf.
	capStart int
	captured []byte

	// mname is the name of the struct member member last read.
	mname []byte
}

const (
	scanBufSize = 32 << 10
	// scanKeep is the most a pooled scanner keeps of a buffer it had to grow.
	scanKeep = 256 << 10
)

var scanners = sync.Pool{New: func() any { return &scanner{buf: make([]byte, scanBufSize), capStart: -1} }}

// newScanner returns a pooled scanner reading r; give it back with free.
func newScanner(r io.Reader) *scanner {
	s := scanners.Get().(*scanner)
	s.r = r
	return s
}

// newBytesScanner returns a scanner over data, which it does not copy.
func newBytesScanner(data []byte) *scanner {
	return &scanner{buf: data, end: len(data), capStart: -1, rerr: io.EOF}
}

func (s *scanner) free() {
	if s.r == nil {
		return
	}
	if cap(s.buf) > scanKeep || cap(s.text) > scanKeep || cap(s.val) > scanKeep {
		return
	}
	*s = scanner{buf: s.buf[:cap(s.buf)], name: s.name[:0], text: s.text[:0], val: s.val[:0], mname: s.mname[:0], capStart: -1}
	scanners.Put(s)
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("xml-rpc at byte %d: %s", s.off+int64(s.pos), fmt.Sprintf(format, args...))
}

// eof is the error for a stream that ended inside the document.
func (s *scanner) eof() error {
	if s.rerr != nil && !errors.Is(s.rerr, io.EOF) {
		return &readError{s.rerr}
	}
	return s.errorf("unexpected end of the response")
}

// more reads more of the stream into buf, keeping buf[pos:end] (and what is
// being captured); false once the stream has nothing more.
func (s *scanner) more() bool {
	if s.rerr != nil {
		return false
	}
	if s.pos > 0 {
		if s.capStart >= 0 {
			s.captured = append(s.captured, s.buf[s.capStart:s.pos]...)
			s.capStart = 0
		}
		n := copy(s.buf, s.buf[s.pos:s.end])
		s.off += int64(s.pos)
		s.tagPos -= s.pos
		s.pos, s.end = 0, n
	}
	if s.end == len(s.buf) {
		s.buf = append(s.buf, make([]byte, len(s.buf))...)
	}
	for empty := 0; empty < 100; empty++ {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.rerr = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	s.rerr = io.ErrNoProgress
	return false
}

// ensure makes n bytes from pos available if the stream has them.
func (s *scanner) ensure(n int) bool {
	for s.end-s.pos < n {
		if !s.more() {
			return false
		}
	}
	return true
}

// next reads the next token. A self-closing tag is a start and an end.
func (s *scanner) next() (tokKind, error) {
	if s.pendingEnd {
		s.pendingEnd = false
		return tokEnd, nil
	}
	for {
		if s.pos >= s.end && !s.more() {
			if s.rerr != nil && !errors.Is(s.rerr, io.EOF) {
				return tokEOF, &readError{s.rerr}
			}
			return tokEOF, nil
		}
		if s.buf[s.pos] != '<' {
			return s.readText()
		}
		if !s.ensure(2) {
			return tokEOF, s.eof()
		}
		switch s.buf[s.pos+1] {
		case '/':
			return tokEnd, s.readTag(true)
		case '?':
			if err := s.until("?>", nil); err != nil {
				return tokEOF, err
			}
		case '!':
			if s.startsWith("<![CDATA[") {
				return s.readText()
			}
			if !s.startsWith("<!--") {
				return tokEOF, s.errorf("unsupported markup (a DTD?)")
			}
			if err := s.until("-->", nil); err != nil {
				return tokEOF, err
			}
		default:
			return tokStart, s.readTag(false)
		}
	}
}

func (s *scanner) startsWith(prefix string) bool {
	return s.ensure(len(prefix)) && string(s.buf[s.pos:s.pos+len(prefix)]) == prefix
}

// until consumes up to and including delim, giving keep what precedes it.
func (s *scanner) until(delim string, keep func([]byte)) error {
	for {
		if i := bytes.Index(s.buf[s.pos:s.end], []byte(delim)); i >= 0 {
			if keep != nil {
				keep(s.buf[s.pos : s.pos+i])
			}
			s.pos += i + len(delim)
			return nil
		}
		if n := s.end - s.pos - (len(delim) - 1); n > 0 {
			if keep != nil {
				keep(s.buf[s.pos : s.pos+n])
			}
			s.pos += n
		}
		if !s.more() {
			return s.eof()
		}
	}
}

// readTag reads a start or end tag from its '<'.
func (s *scanner) readTag(end bool) error {
	i := bytes.IndexByte(s.buf[s.pos:s.end], '>')
	for i < 0 {
		if !s.more() {
			return s.eof()
		}
		i = bytes.IndexByte(s.buf[s.pos:s.end], '>')
	}
	s.tagPos = s.pos
	tag := s.buf[s.pos+1 : s.pos+i]
	s.pos += i + 1
	if end {
		tag = tag[1:]
	} else if len(tag) > 0 && tag[len(tag)-1] == '/' {
		tag = tag[:len(tag)-1]
		s.pendingEnd = true
	}
	n := 0
	for n < len(tag) && !isSpace(tag[n]) {
		n++
	}
	if n == 0 {
		return s.errorf("a tag without a name")
	}
	s.name = append(s.name[:0], tag[:n]...)
	return nil
}

// textByte tells which bytes readText copies as they are.
var textByte = func() (t [256]bool) {
	for i := range t {
		t[i] = i != '<' && i != '&' && i != '\r'
	}
	return t
}()

// readText reads character data up to the next tag into text: entities
// replaced, CDATA sections kept, comments dropped, line ends normalised to
// LF as XML requires.
func (s *scanner) readText() (tokKind, error) {
	s.text = s.text[:0]
	cr := false // the last byte copied was a CR made LF
	for s.pos < s.end || s.more() {
		switch s.buf[s.pos] {
		case '<':
			if !s.ensure(2) || s.buf[s.pos+1] != '!' && s.buf[s.pos+1] != '?' {
				return tokText, nil // a tag
			}
			cr = false // a CR before the markup is not followed by an LF
			switch {
			case s.startsWith("<![CDATA["):
				s.pos += len("<![CDATA[")
				if err := s.until("]]>", func(b []byte) { s.text = appendNormalised(s.text, b, &cr) }); err != nil {
					return tokEOF, err
				}
				continue
			case s.startsWith("<!--"):
				if err := s.until("-->", nil); err != nil {
					return tokEOF, err
				}
				continue
			case s.startsWith("<?"):
				if err := s.until("?>", nil); err != nil {
					return tokEOF, err
				}
				continue
			}
			return tokText, nil
		case '&':
			if err := s.entity(); err != nil {
				return tokEOF, err
			}
			cr = false
		case '\r':
			s.text = append(s.text, '\n')
			s.pos++
			cr = true
		default:
			j := s.pos + 1
			for j < s.end && textByte[s.buf[j]] {
				j++
			}
			b := s.buf[s.pos:j]
			if cr && b[0] == '\n' {
				b = b[1:]
			}
			s.text = append(s.text, b...)
			s.pos = j
			cr = false
		}
	}
	if s.rerr != nil && !errors.Is(s.rerr, io.EOF) {
		return tokEOF, &readError{s.rerr}
	}
	return tokText, nil
}

func appendNormalised(dst, b []byte, cr *bool) []byte {
	for _, c := range b {
		switch {
		case c == '\r':
			dst = append(dst, '\n')
			*cr = true
			continue
		case c == '\n' && *cr:
		default:
			dst = append(dst, c)
		}
		*cr = false
	}
	return dst
}

// entity replaces the entity at pos.
func (s *scanner) entity() error {
	const longest = len("&#x10FFFF;")
	s.ensure(longest)
	j := bytes.IndexByte(s.buf[s.pos:min(s.end, s.pos+longest)], ';')
	if j < 0 {
		return s.errorf("an unterminated entity")
	}
	name := s.buf[s.pos+1 : s.pos+j]
	s.pos += j + 1
	switch string(name) {
	case "lt":
		s.text = append(s.text, '<')
	case "gt":
		s.text = append(s.text, '>')
	case "amp":
		s.text = append(s.text, '&')
	case "quot":
		s.text = append(s.text, '"')
	case "apos":
		s.text = append(s.text, '\'')
	default:
		if len(name) < 2 || name[0] != '#' {
			return s.errorf("an unknown entity &%s;", name)
		}
		var r uint64
		var err error
		if name[1] == 'x' {
			r, err = strconv.ParseUint(string(name[2:]), 16, 32)
		} else {
			r, err = strconv.ParseUint(string(name[1:]), 10, 32)
		}
		if err != nil || r > utf8.MaxRune || !isXMLChar(rune(r)) {
			return s.errorf("an invalid character reference &%s;", name)
		}
		s.text = utf8.AppendRune(s.text, rune(r))
	}
	return nil
}

// isXMLChar is XML's Char production.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func allSpace(b []byte) bool {
	for _, c := range b {
		if !isSpace(c) {
			return false
		}
	}
	return true
}

// tag reads the next start or end tag, skipping whitespace.
func (s *scanner) tag() (tokKind, error) {
	for {
		k, err := s.next()
		switch {
		case err != nil:
			return k, err
		case k == tokEOF:
			return k, s.eof()
		case k != tokText:
			return k, nil
		case !allSpace(s.text):
			return k, s.errorf("unexpected text %q", truncate(s.text))
		}
	}
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

func (s *scanner) expect(kind tokKind, name string) error {
	k, err := s.tag()
	if err != nil {
		return err
	}
	if k != kind || string(s.name) != name {
		want := "<" + name + ">"
		if kind == tokEnd {
			want = "</" + name + ">"
		}
		return s.errorf("expected %s, found %s", want, s.found(k))
	}
	return nil
}

func (s *scanner) found(k tokKind) string {
	if k == tokEnd {
		return "</" + string(s.name) + ">"
	}
	return "<" + string(s.name) + ">"
}

// valueKind is what a value holds.
type valueKind uint8

const (
	valString valueKind = iota // untyped or <string>
	valInt                     // <int>, <i4>, <i8>
	valBool
	valDouble
	valDate
	valBase64
	valNil
	valStruct      // open: read its members with member
	valArray       // open: read its elements with elem
	valEmptyArray  // <array/> or <array></array>, closed
	valEmptyScalar // an empty typed scalar such as <int/>, closed
)

// scalarTypes are the scalar types by their element name.
var scalarTypes = map[string]struct {
	kind valueKind
	name string
}{
	"string": {valString, "string"}, "int": {valInt, "int"}, "i4": {valInt, "i4"}, "i8": {valInt, "i8"},
	"boolean": {valBool, "boolean"}, "double": {valDouble, "double"},
	"dateTime.iso8601": {valDate, "dateTime.iso8601"}, "base64": {valBase64, "base64"},
}

func (k valueKind) String() string {
	return [...]string{"a string", "an int", "a boolean", "a double", "a dateTime.iso8601", "base64", "nil",
		"a struct", "an array", "an array", "an empty value"}[k]
}

// open reads the content of a value whose <value> tag was read. A scalar's
// text is left in val and its </value> read; a struct or an array is left
// open for member or elem.
func (s *scanner) open() (valueKind, error) {
	k, err := s.next()
	if err != nil {
		return 0, err
	}
	if k == tokText {
		if k, err = s.next(); err != nil {
			return 0, err
		}
		if k == tokStart && !allSpace(s.text) {
			return 0, s.errorf("text before <%s> in a value", s.name)
		}
	} else {
		s.text = s.text[:0]
	}
	switch k {
	case tokEnd: // an untyped string
		if string(s.name) != "value" {
			return 0, s.errorf("expected </value>, found </%s>", s.name)
		}
		s.val, s.text = s.text, s.val[:0]
		return valString, nil
	case tokStart:
	default:
		return 0, s.eof()
	}
	switch string(s.name) {
	case "struct":
		return valStruct, nil
	case "array":
		k, err := s.tag()
		if err != nil {
			return 0, err
		}
		if k == tokStart && string(s.name) == "data" {
			return valArray, nil
		}
		if k != tokEnd || string(s.name) != "array" {
			return 0, s.errorf("expected <data>, found %s", s.found(k))
		}
		return valEmptyArray, s.expect(tokEnd, "value")
	case "nil":
		if err := s.expect(tokEnd, "nil"); err != nil {
			return 0, err
		}
		return valNil, s.expect(tokEnd, "value")
	}
	typ, ok := scalarTypes[string(s.name)]
	if !ok {
		return 0, s.errorf("unsupported value type <%s>", s.name)
	}
	if k, err = s.next(); err != nil {
		return 0, err
	}
	if k == tokText {
		k, err = s.next()
		if err != nil {
			return 0, err
		}
	} else {
		s.text = s.text[:0]
	}
	if k != tokEnd || string(s.name) != typ.name {
		return 0, s.errorf("expected </%s>, found %s", typ.name, s.found(k))
	}
	kind := typ.kind
	if len(s.text) == 0 && kind != valString {
		kind = valEmptyScalar
	}
	s.val, s.text = s.text, s.val[:0]
	return kind, s.expect(tokEnd, "value")
}

// member reads a struct member up to its <value>, leaving its name in
// mname: false at the end of the struct (and of its value).
func (s *scanner) member() (bool, error) {
	k, err := s.tag()
	if err != nil {
		return false, err
	}
	if k == tokEnd && string(s.name) == "struct" {
		return false, s.expect(tokEnd, "value")
	}
	if k != tokStart || string(s.name) != "member" {
		return false, s.errorf("expected <member>, found %s", s.found(k))
	}
	if err := s.expect(tokStart, "name"); err != nil {
		return false, err
	}
	if k, err = s.next(); err != nil {
		return false, err
	}
	s.mname = s.mname[:0]
	if k == tokText {
		s.mname = append(s.mname, s.text...)
		if k, err = s.next(); err != nil {
			return false, err
		}
	}
	if k != tokEnd || string(s.name) != "name" {
		return false, s.errorf("expected </name>, found %s", s.found(k))
	}
	return true, s.expect(tokStart, "value")
}

// endMember reads the end of a member whose value was read.
func (s *scanner) endMember() error { return s.expect(tokEnd, "member") }

// elem reads an array element up to its <value>: false at the end of the
// array (and of its value).
func (s *scanner) elem() (bool, error) {
	k, err := s.tag()
	if err != nil {
		return false, err
	}
	if k == tokEnd && string(s.name) == "data" {
		if err := s.expect(tokEnd, "array"); err != nil {
			return false, err
		}
		return false, s.expect(tokEnd, "value")
	}
	if k != tokStart || string(s.name) != "value" {
		return false, s.errorf("expected <value>, found %s", s.found(k))
	}
	return true, nil
}

// skip reads the rest of a value whose <value> tag was read. It only
// counts tags: the text of what it skips is neither copied nor decoded
// (its entities are not checked), which makes skipping the fields no
// record keeps cheap; xapi sends a host's resident_VMs, an SR's VDIs and a
// network's VIFs whole with every change to them, thousands of refs long.
func (s *scanner) skip() error {
	if s.pendingEnd { // <value/>
		s.pendingEnd = false
		return nil
	}
	for depth := 1; ; {
		i := bytes.IndexByte(s.buf[s.pos:s.end], '<')
		if i < 0 {
			s.pos = s.end
			if !s.more() {
				return s.eof()
			}
			continue
		}
		s.pos += i
		if !s.ensure(2) {
			return s.eof()
		}
		var err error
		switch s.buf[s.pos+1] {
		case '?':
			err = s.until("?>", nil)
		case '!':
			switch {
			case s.startsWith("<![CDATA["):
				err = s.until("]]>", nil)
			case s.startsWith("<!--"):
				err = s.until("-->", nil)
			default:
				err = s.errorf("unsupported markup (a DTD?)")
			}
		case '/':
			if err = s.readTag(true); err == nil {
				if depth--; depth == 0 {
					return nil
				}
			}
		default:
			if err = s.readTag(false); err == nil {
				if s.pendingEnd {
					s.pendingEnd = false
				} else {
					depth++
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// capture skips a value whose <value> tag was just read (by member or
// elem) and returns its raw XML, to decode later with newBytesScanner.
func (s *scanner) capture() ([]byte, error) {
	s.capStart, s.captured = s.tagPos, nil
	err := s.skip()
	s.captured = append(s.captured, s.buf[s.capStart:s.pos]...)
	raw := s.captured
	s.capStart, s.captured = -1, nil
	return raw, err
}

// str reads a string value whose <value> tag was read.
func (s *scanner) str() (string, error) {
	k, err := s.open()
	if err != nil {
		return "", err
	}
	switch k {
	case valString, valBase64:
		return s.textString(), nil
	case valEmptyScalar:
		return "", nil
	}
	return "", s.mismatch(k, "string")
}

// textString is val as a string, sharing the common ones.
func (s *scanner) textString() string {
	switch {
	case len(s.val) == 0:
		return ""
	case string(s.val) == NullRef:
		return NullRef
	}
	return string(s.val)
}

func (s *scanner) mismatch(k valueKind, into string) error {
	return s.errorf("cannot decode %s into %s", k, into)
}

// envelope reads xapi's response, <methodResponse> with a struct of Status,
// Value and ErrorDescription, calling value on the Value's <value>.
func (s *scanner) envelope(value func(*scanner) error) (status string, errorDescription []string, err error) {
	for _, tag := range []string{"methodResponse", "params", "param", "value"} {
		if err := s.expect(tokStart, tag); err != nil {
			if string(s.name) == "fault" {
				return "", nil, s.fault()
			}
			return "", nil, err
		}
	}
	k, err := s.open()
	if err != nil {
		return "", nil, err
	}
	if k != valStruct {
		return "", nil, s.mismatch(k, "a Status/Value struct")
	}
	for {
		ok, err := s.member()
		if err != nil || !ok {
			if err == nil {
				err = s.endEnvelope()
			}
			return status, errorDescription, err
		}
		switch string(s.mname) {
		case "Status":
			status, err = s.str()
		case "Value":
			err = value(s)
		case "ErrorDescription":
			err = decodeValue(s, &errorDescription)
		default:
			err = s.skip()
		}
		if err == nil {
			err = s.endMember()
		}
		if err != nil {
			return "", nil, err
		}
	}
}

func (s *scanner) endEnvelope() error {
	for _, tag := range []string{"param", "params", "methodResponse"} {
		if err := s.expect(tokEnd, tag); err != nil {
			return err
		}
	}
	return nil
}

// fault reads an XML-RPC <fault> (xapi never sends one) into an error.
func (s *scanner) fault() error {
	var f struct {
		Code   int    `xmlrpc:"faultCode"`
		String string `xmlrpc:"faultString"`
	}
	if err := s.expect(tokStart, "value"); err != nil {
		return err
	}
	if err := decodeValue(s, &f); err != nil {
		return err
	}
	return fmt.Errorf("XML-RPC fault %d: %s", f.Code, f.String)
}

// decodeFunc decodes a value whose <value> tag was read into v.
type decodeFunc func(s *scanner, v reflect.Value) error

// decodeValue decodes a value whose <value> tag was read into *ptr.
func decodeValue[T any](s *scanner, ptr *T) error {
	return decoderOf(reflect.TypeFor[T]())(s, reflect.ValueOf(ptr).Elem())
}

var typeDecoders sync.Map // reflect.Type -> decodeFunc

// decoderOf returns the decoder of a type, made once.
func decoderOf(t reflect.Type) decodeFunc {
	if f, ok := typeDecoders.Load(t); ok {
		return f.(decodeFunc)
	}
	// A forward for recursive types, until the decoder is made.
	var (
		wg sync.WaitGroup
		f  decodeFunc
	)
	wg.Add(1)
	fi, loaded := typeDecoders.LoadOrStore(t, decodeFunc(func(s *scanner, v reflect.Value) error {
		wg.Wait()
		return f(s, v)
	}))
	if loaded {
		return fi.(decodeFunc)
	}
	f = newDecoder(t)
	wg.Done()
	typeDecoders.Store(t, f)
	return f
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	stringsType   = reflect.TypeFor[[]string]()
	stringMapType = reflect.TypeFor[map[string]string]()
)

// The dateTime.iso8601 layouts kolo accepts; xapi sends the second.
var timeLayouts = []string{"20060102T15:04:05", "20060102T15:04:05Z07:00", "2006-01-02T15:04:05", "2006-01-02T15:04:05Z07:00"}

func newDecoder(t reflect.Type) decodeFunc {
	switch t {
	case timeType:
		return decodeTime
	case stringsType:
		return decodeStrings
	case stringMapType:
		return decodeStringMap
	}
	switch t.Kind() {
	case reflect.String:
		return func(s *scanner, v reflect.Value) error {
			str, err := s.str()
			if err == nil {
				v.SetString(str)
			}
			return err
		}
	case reflect.Bool:
		return scalar(valBool, "a bool", func(s *scanner, v reflect.Value) error {
			b, err := strconv.ParseBool(string(s.val))
			v.SetBool(b)
			return err
		})
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalar(valInt, "an int", func(s *scanner, v reflect.Value) error {
			i, err := strconv.ParseInt(string(s.val), 10, t.Bits())
			v.SetInt(i)
			return err
		})
	case reflect.Float32, reflect.Float64:
		return scalar(valDouble, "a float", func(s *scanner, v reflect.Value) error {
			f, err := strconv.ParseFloat(string(s.val), t.Bits())
			v.SetFloat(f)
			return err
		})
	case reflect.Pointer:
		elem := decoderOf(t.Elem())
		return func(s *scanner, v reflect.Value) error {
			if v.IsNil() {
				v.Set(reflect.New(t.Elem()))
			}
			return elem(s, v.Elem())
		}
	case reflect.Slice:
		return sliceDecoder(t)
	case reflect.Map:
		if t.Key().Kind() == reflect.String {
			return mapDecoder(t)
		}
	case reflect.Struct:
		return structDecoder(t)
	}
	return func(s *scanner, _ reflect.Value) error {
		return s.errorf("cannot decode into a %s", t)
	}
}

// scalar decodes a scalar of kind with set, which parses text.
func scalar(kind valueKind, into string, set func(*scanner, reflect.Value) error) decodeFunc {
	return func(s *scanner, v reflect.Value) error {
		k, err := s.open()
		switch {
		case err != nil:
			return err
		case k == valEmptyScalar:
			return nil
		case k != kind:
			return s.mismatch(k, into)
		}
		if err := set(s, v); err != nil {
			return s.errorf("%v", err)
		}
		return nil
	}
}

func decodeTime(s *scanner, v reflect.Value) error {
	k, err := s.open()
	switch {
	case err != nil:
		return err
	case k == valEmptyScalar:
		return nil
	case k != valDate:
		return s.mismatch(k, "a time")
	}
	text := string(s.val)
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, text); err == nil {
			v.Set(reflect.ValueOf(t))
			return nil
		}
	}
	return s.errorf("cannot parse the dateTime.iso8601 %q", text)
}

// decodeStrings is sliceDecoder for []string, without reflection.
func decodeStrings(s *scanner, v reflect.Value) error {
	k, err := s.open()
	switch {
	case err != nil:
		return err
	case k == valEmptyArray || k == valEmptyScalar:
		return nil
	case k != valArray:
		return s.mismatch(k, "a slice")
	}
	var out []string
	for {
		ok, err := s.elem()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		str, err := s.str()
		if err != nil {
			return err
		}
		out = append(out, str)
	}
	*v.Addr().Interface().(*[]string) = out
	return nil
}

// decodeStringMap is mapDecoder for map[string]string, without reflection.
func decodeStringMap(s *scanner, v reflect.Value) error {
	k, err := s.open()
	switch {
	case err != nil:
		return err
	case k == valEmptyScalar:
		return nil
	case k != valStruct:
		return s.mismatch(k, "a map")
	}
	out := map[string]string{}
	for {
		ok, err := s.member()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		key := string(s.mname)
		if out[key], err = s.str(); err != nil {
			return err
		}
		if err := s.endMember(); err != nil {
			return err
		}
	}
	*v.Addr().Interface().(*map[string]string) = out
	return nil
}

func sliceDecoder(t reflect.Type) decodeFunc {
	elem := decoderOf(t.Elem())
	return func(s *scanner, v reflect.Value) error {
		k, err := s.open()
		switch {
		case err != nil:
			return err
		case k == valEmptyArray || k == valEmptyScalar:
			return nil
		case k != valArray:
			return s.mismatch(k, "a slice")
		}
		out := reflect.New(t).Elem()
		for {
			ok, err := s.elem()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			n := out.Len()
			out.Grow(1)
			out.SetLen(n + 1)
			if err := elem(s, out.Index(n)); err != nil {
				return err
			}
		}
		if out.Len() > 0 {
			v.Set(out)
		}
		return nil
	}
}

func mapDecoder(t reflect.Type) decodeFunc {
	elem := decoderOf(t.Elem())
	return func(s *scanner, v reflect.Value) error {
		k, err := s.open()
		switch {
		case err != nil:
			return err
		case k == valEmptyScalar:
			return nil
		case k != valStruct:
			return s.mismatch(k, "a map")
		}
		out := reflect.MakeMap(t)
		e := reflect.New(t.Elem()).Elem()
		for {
			ok, err := s.member()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			key := reflect.ValueOf(string(s.mname)).Convert(t.Key())
			e.SetZero()
			if err := elem(s, e); err != nil {
				return err
			}
			out.SetMapIndex(key, e)
			if err := s.endMember(); err != nil {
				return err
			}
		}
		v.Set(out)
		return nil
	}
}

// structDecoder decodes a struct's members into the fields named by their
// xmlrpc tag (or, untagged, by their name), skipping the other members.
func structDecoder(t reflect.Type) decodeFunc {
	type field struct {
		index  int
		decode decodeFunc
	}
	fields := map[string]field{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("xmlrpc"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		fields[name] = field{index: i, decode: decoderOf(f.Type)}
	}
	return func(s *scanner, v reflect.Value) error {
		k, err := s.open()
		switch {
		case err != nil:
			return err
		case k == valEmptyScalar:
			return nil
		case k != valStruct:
			return s.mismatch(k, "a "+t.String())
		}
		for {
			ok, err := s.member()
			if err != nil || !ok {
				return err
			}
			if f, ok := fields[string(s.mname)]; ok {
				err = f.decode(s, v.Field(f.index))
			} else {
				err = s.skip()
			}
			if err != nil {
				return err
			}
			if err := s.endMember(); err != nil {
				return err
			}
		}
	}
}
