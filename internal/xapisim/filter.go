package xapisim

import (
	"strconv"
	"strings"
	"time"
)

// The expression language of get_all_records_where and get_all_where, as
// xapi's database parses and evaluates it (ocaml/database/db_filter_lex.mll,
// db_filter_parse.mly, db_filter.ml, db_cache_impl.ml):
//
//	expr  := value "=" value | expr "and" expr | expr "or" expr
//	       | "not" expr | "true" | "false" | "(" expr ")"
//	value := "literal" | field "column"
//
// Quoted strings have no escapes. "and" and "or" share one precedence level
// and group to the left; "not" is declared with lower precedence than both,
// so it takes everything to its right up to a closing parenthesis:
// `not a and b` is `not (a and b)`. Values compare as the strings the
// database stores; a field is named by its database column, where a
// namespaced field joins its parts with "__" (VM.name_label is
// "name__label", VM.memory_static_max is "memory__static_max").

// filterExpr is a parsed expression (db_filter_types.ml).
type filterExpr struct {
	op   string // "true", "false", "not", "and", "or", "eq"
	a, b *filterExpr
	// For "eq": the two values; field tells whether each names a column.
	lhs, rhs filterValue
}

type filterValue struct {
	field bool
	s     string
}

// errParse and errLex are the exceptions xapi's parser and lexer raise, as
// Printexc prints them into INVALID_VALUE [expr; exception].
var (
	errParse = "Stdlib.Parsing.Parse_error"
	errLex   = `Failure("lexing: empty token")`
)

type filterToken struct {
	kind string // "=", "(", ")", "true", "false", "field", "and", "or", "not", "ident", "eof"
	s    string
}

// filterLexer is db_filter_lex.mll: keywords are recognised wherever they
// start (ocamllex takes the longest match, and no rule matches a bare word),
// anything else is a lexing failure.
type filterLexer struct {
	in  string
	pos int
}

func (l *filterLexer) next() (filterToken, error) {
	for l.pos < len(l.in) && (l.in[l.pos] == ' ' || l.in[l.pos] == '\t' || l.in[l.pos] == '\n') {
		l.pos++
	}
	if l.pos == len(l.in) {
		return filterToken{kind: "eof"}, nil
	}
	rest := l.in[l.pos:]
	switch rest[0] {
	case '=', '(', ')':
		l.pos++
		return filterToken{kind: rest[:1]}, nil
	case '"':
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return filterToken{}, errorString(errLex)
		}
		l.pos += end + 2
		return filterToken{kind: "ident", s: rest[1 : end+1]}, nil
	}
	for _, kw := range []string{"true", "false", "field", "and", "or", "not"} {
		if strings.HasPrefix(rest, kw) {
			l.pos += len(kw)
			return filterToken{kind: kw}, nil
		}
	}
	return filterToken{}, errorString(errLex)
}

type errorString string

func (e errorString) Error() string { return string(e) }

// filterParser reads tokens one at a time, as ocamlyacc does, so that a
// syntax error before a lexing error is reported as the syntax error.
type filterParser struct {
	lex  filterLexer
	tok  filterToken
	have bool
}

func (p *filterParser) peek() (filterToken, error) {
	if !p.have {
		t, err := p.lex.next()
		if err != nil {
			return t, err
		}
		p.tok, p.have = t, true
	}
	return p.tok, nil
}

func (p *filterParser) take(kind string) (filterToken, error) {
	t, err := p.peek()
	if err != nil {
		return t, err
	}
	if t.kind != kind {
		return t, errorString(errParse)
	}
	p.have = false
	return t, nil
}

// expr parses a sequence of operands joined by "and"/"or", left to right.
func (p *filterParser) expr() (*filterExpr, error) {
	left, err := p.operand()
	if err != nil {
		return nil, err
	}
	for {
		t, err := p.peek()
		if err != nil {
			return nil, err
		}
		if t.kind != "and" && t.kind != "or" {
			return left, nil
		}
		p.have = false
		right, err := p.operand()
		if err != nil {
			return nil, err
		}
		left = &filterExpr{op: t.kind, a: left, b: right}
	}
}

func (p *filterParser) operand() (*filterExpr, error) {
	t, err := p.peek()
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case "true", "false":
		p.have = false
		return &filterExpr{op: t.kind}, nil
	case "not":
		p.have = false
		inner, err := p.expr()
		if err != nil {
			return nil, err
		}
		return &filterExpr{op: "not", a: inner}, nil
	case "(":
		p.have = false
		inner, err := p.expr()
		if err != nil {
			return nil, err
		}
		if _, err := p.take(")"); err != nil {
			return nil, err
		}
		return inner, nil
	case "ident", "field":
		lhs, err := p.value()
		if err != nil {
			return nil, err
		}
		if _, err := p.take("="); err != nil {
			return nil, err
		}
		rhs, err := p.value()
		if err != nil {
			return nil, err
		}
		return &filterExpr{op: "eq", lhs: lhs, rhs: rhs}, nil
	}
	return nil, errorString(errParse)
}

func (p *filterParser) value() (filterValue, error) {
	t, err := p.peek()
	if err != nil {
		return filterValue{}, err
	}
	if t.kind == "field" {
		p.have = false
		id, err := p.take("ident")
		return filterValue{field: true, s: id.s}, err
	}
	id, err := p.take("ident")
	return filterValue{s: id.s}, err
}

// parseFilter parses expr, or fails with xapi's
// INVALID_VALUE [expr; exception] (exnHelper.ml Expression_error).
func parseFilter(expr string) (*filterExpr, error) {
	p := &filterParser{lex: filterLexer{in: expr}}
	e, err := p.expr()
	if err == nil {
		_, err = p.take("eof")
	}
	if err != nil {
		return nil, newFailure(errInvalidValue, expr, err.Error())
	}
	return e, nil
}

// errMissingField is the database's error for a column a table does not
// have: DBCache_NotFound ("missing field", column, ""), which exnHelper.ml
// turns into INTERNAL_ERROR [reason; column; ""].
type errMissingField string

func (e errMissingField) Error() string { return string(e) }

// eval evaluates e on o, as Db_filter.eval_expr does (and/or short-circuit).
func (e *filterExpr) eval(o *object) (bool, error) {
	switch e.op {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "not":
		v, err := e.a.eval(o)
		return !v, err
	case "and", "or":
		v, err := e.a.eval(o)
		if err != nil || v == (e.op == "or") {
			return v, err
		}
		return e.b.eval(o)
	}
	// OCaml evaluates the arguments of `f (lookup a) (lookup b)` right to
	// left: the right-hand value is looked up first.
	r, err := lookupValue(o, e.rhs)
	if err != nil {
		return false, err
	}
	l, err := lookupValue(o, e.lhs)
	if err != nil {
		return false, err
	}
	return l == r, nil
}

func lookupValue(o *object, v filterValue) (string, error) {
	if !v.field {
		return v.s, nil
	}
	if v.s == "_ref" {
		return o.ref, nil
	}
	f, ok := o.class.columns[v.s]
	if !ok {
		return "", errMissingField(v.s)
	}
	return dbString(f.typ, o.fields[f.name]), nil
}

// dbNamespaces are the namespaces of the modelled classes' fields
// (`namespace ~name:...` in ocaml/idl/datamodel.ml, datamodel_vm.ml,
// datamodel_host.ml): the API joins a namespaced field's parts with "_",
// the database with "__". pool.name_label is a plain field
// (datamodel_pool.ml), so its column is "name_label".
var dbNamespaces = map[string][]string{
	"task":         {"name"},
	"network":      {"name"},
	"SR":           {"name"},
	"VDI":          {"name"},
	"host":         {"name", "memory", "API_version"},
	"host_metrics": {"memory"},
	"VM":           {"name", "memory", "VCPUs", "actions", "PV", "HVM"},
	"VM_metrics":   {"memory", "VCPUs"},
	"VIF":          {"qos"},
	"VBD":          {"qos"},
	"PIF_metrics":  {"io"},
}

// dbColumn is the database column of a field of class.
func dbColumn(class, name string) string {
	for _, ns := range dbNamespaces[class] {
		if rest, ok := strings.CutPrefix(name, ns+"_"); ok {
			return ns + "__" + rest
		}
	}
	return name
}

// dbString is a value as xapi's database stores it (gen_db_actions.ml
// DM_to_String; sets and maps as S-expressions, String_marshall_helper).
func dbString(t *xtype, v any) string {
	switch t.kind {
	case kInt:
		i, _ := v.(int64)
		return strconv.FormatInt(i, 10)
	case kFloat:
		f, _ := v.(float64)
		return strconv.FormatFloat(f, 'g', 18, 64) // Printf "%0.18g"
	case kBool:
		b, _ := v.(bool)
		return strconv.FormatBool(b)
	case kDateTime:
		d, _ := v.(time.Time)
		return d.UTC().Format(xapiTimeLayout)
	case kSet:
		var b strings.Builder
		b.WriteByte('(')
		s, _ := v.([]any)
		for i, e := range s {
			if i > 0 {
				b.WriteByte(' ')
			}
			sexprString(&b, dbString(t.elem, e))
		}
		b.WriteByte(')')
		return b.String()
	case kMap:
		// xapi keeps a map's pairs in the order they were added; the
		// simulator's maps have no order, so they are written by key.
		var b strings.Builder
		b.WriteByte('(')
		m, _ := v.(map[string]any)
		for i, k := range sortedKeys(m) {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteByte('(')
			sexprString(&b, k)
			b.WriteByte(' ')
			sexprString(&b, dbString(t.elem, m[k]))
			b.WriteByte(')')
		}
		b.WriteByte(')')
		return b.String()
	}
	s, _ := v.(string)
	return s
}

// sexprString writes s quoted as SExpr.string_of does (sExpr.ml): in single
// quotes, with \ and ' escaped by a backslash.
func sexprString(b *strings.Builder, s string) {
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
}

// where returns the objects of class for which expr holds, or the error
// xapi's database raises while parsing or evaluating it.
func (s *store) where(class, expr string) ([]*object, error) {
	e, err := parseFilter(expr)
	if err != nil {
		return nil, err
	}
	var out []*object
	for _, o := range s.all(class) {
		ok, err := e.eval(o)
		if err != nil {
			return nil, newFailure(errInternalError, "missing field", err.Error(), "")
		}
		if ok {
			out = append(out, o)
		}
	}
	return out, nil
}
