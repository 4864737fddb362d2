package xapisim

import (
	"sort"
	"testing"

	. "github.com/onsi/gomega"
)

// keys returns the sorted keys of a get_all_records(_where) result.
func keys(v any) []string {
	var out []string
	for k := range v.(map[string]any) {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sortedRefs sorts a set of refs.
func sortedRefs(v any) []string {
	var out []string
	for _, r := range v.([]any) {
		out = append(out, r.(string))
	}
	sort.Strings(out)
	return out
}

// TestGetAllRecordsWhere follows xapi's expression language for
// get_all_records_where and get_all_where (XENAPI.md §4; xen-api
// ocaml/database/db_filter_lex.mll, db_filter_parse.mly, db_filter.ml,
// db_cache_impl.ml): fields are database columns (namespaced fields joined
// with "__"), values compare as the strings the database stores.
func TestGetAllRecordsWhere(t *testing.T) {
	s := newSim(t, Config{Hosts: 2})
	c := newClient(t, s.URL()).login()
	where := func(class, expr string) []string {
		t.Helper()
		return keys(c.must(class+".get_all_records_where", expr))
	}
	vms := keys(c.must("VM.get_all_records"))
	tmpl := c.vmByName("Debian Bookworm 12")
	vm := c.install("Debian Bookworm 12", "where")
	c.must("VM.start", vm, false, false)
	c.must("VM.add_tags", vm, "web")
	c.must("VM.add_tags", vm, "it's")

	t.Run("literals and the whole table", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(where("VM", "true")).To(Equal(keys(c.must("VM.get_all_records"))))
		g.Expect(where("VM", "false")).To(BeEmpty())
		g.Expect(where("VM", `"a"="a"`)).To(HaveLen(len(vms)+1), "two literals compare too")
		g.Expect(where("VM", ` ( "a"	=
"b" ) `)).To(BeEmpty(), "blanks, tabs and newlines separate tokens")
	})
	t.Run("namespaced fields are database columns", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(where("VM", `field "name__label"="Debian Bookworm 12"`)).To(Equal([]string{tmpl}))
		g.Expect(where("VM", `field "memory__static_max"="1073741824" and field "uuid"=`+
			`"`+c.field("VM", vm, "uuid").(string)+`"`)).To(Equal([]string{vm}), "ints as decimal strings")
		_, f := c.do("VM.get_all_records_where", `field "name_label"="Debian Bookworm 12"`)
		g.Expect(f).To(failWith(errInternalError, "missing field", "name_label", ""),
			"the API name is not a column of the VM table")
		pools := c.must("pool.get_all").([]any)
		g.Expect(where("pool", `field "name_label"="xapi-simulator pool"`)).To(Equal([]string{pools[0].(string)}),
			"pool.name_label is a plain field: its column is name_label")
	})
	t.Run("values as the database stores them", func(t *testing.T) {
		g := NewWithT(t)
		host := c.field("VM", vm, "resident_on").(string)
		g.Expect(where("VM", `field "resident_on"="`+host+`" and field "is_control_domain"="false"`)).
			To(Equal([]string{vm}), "refs and bools (true/false)")
		g.Expect(where("VM", `field "power_state"="Running" and field "is_control_domain"="false"`)).
			To(Equal([]string{vm}), "enums as declared")
		g.Expect(where("VM", `field "tags"="('web' 'it\'s')"`)).To(Equal([]string{vm}),
			"a set is an S-expression, its ' escaped; the expression's quoted string has no escapes")
		g.Expect(where("VM", `field "HVM__shadow_multiplier"="1" and field "uuid"="`+
			c.field("VM", vm, "uuid").(string)+`"`)).To(Equal([]string{vm}), "floats as %0.18g")
		g.Expect(where("VM", `field "_ref"="`+vm+`"`)).To(Equal([]string{vm}), "the _ref column")
		g.Expect(where("VBD", `field "VM"="`+vm+`" and field "currently_attached"="true"`)).
			To(Equal(sortedRefs(c.field("VM", vm, "VBDs"))))
		g.Expect(where("VM", `field "blocked_operations"="()" and field "uuid"="`+
			c.field("VM", vm, "uuid").(string)+`"`)).To(Equal([]string{vm}), "an empty map is ()")
	})
	t.Run("sets and maps as S-expressions", func(t *testing.T) {
		g := NewWithT(t)
		var tags []string
		for _, t := range c.field("VM", vm, "tags").([]any) {
			tags = append(tags, t.(string))
		}
		g.Expect(tags).To(Equal([]string{"web", "it's"}))
		c.must("VM.remove_tags", vm, "it's")
		g.Expect(where("VM", `field "tags"="('web')"`)).To(Equal([]string{vm}))
		c.must("VM.set_HVM_boot_params", vm, map[string]string{"order": "dc"})
		g.Expect(where("VM", `field "HVM__boot_params"="(('order' 'dc'))" and field "uuid"="`+
			c.field("VM", vm, "uuid").(string)+`"`)).To(Equal([]string{vm}))
	})
	t.Run("and, or and not; not takes everything to its right", func(t *testing.T) {
		g := NewWithT(t)
		running := `field "power_state"="Running"`
		dom0 := `field "is_control_domain"="true"`
		g.Expect(where("VM", running+" and not "+dom0)).To(Equal([]string{vm}))
		g.Expect(where("VM", running+" and not ("+dom0+")")).To(Equal([]string{vm}))
		g.Expect(where("VM", "not "+dom0+" and "+running)).To(Equal(where("VM", "not ("+dom0+" and "+running+")")),
			"not binds looser than and: not (a and b)")
		g.Expect(where("VM", "not "+dom0+" and "+running)).To(ContainElement(tmpl))
		g.Expect(where("VM", running+" or "+dom0+" and "+running)).To(
			Equal(where("VM", "("+running+" or "+dom0+") and "+running)), "and and or group to the left")
		g.Expect(where("VM", dom0+" or "+running)).To(HaveLen(3))
	})
	t.Run("get_all_where returns the references", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(sortedRefs(c.must("VM.get_all_where", `field "is_a_template"="true"`))).
			To(Equal(where("VM", `field "is_a_template"="true"`)))
	})
	t.Run("syntax and lexing errors are INVALID_VALUE [expr; exception]", func(t *testing.T) {
		g := NewWithT(t)
		for _, expr := range []string{``, `field "a"`, `true true`, `("a"="b"`, `"a"="b")`, `true and`,
			`field "a"=true`, `not`, `field = "a"`, `true or ()`} {
			_, f := c.do("VM.get_all_records_where", expr)
			g.Expect(f).To(failWith(errInvalidValue, expr, "Stdlib.Parsing.Parse_error"), expr)
		}
		for _, expr := range []string{`field "a"="b`, `name="x"`, `true AND false`, `"a"="a";`} {
			_, f := c.do("VM.get_all_records_where", expr)
			g.Expect(f).To(failWith(errInvalidValue, expr, `Failure("lexing: empty token")`), expr)
		}
		for _, expr := range []string{`true true #`, `"a"=='a'`} {
			_, f := c.do("VM.get_all_records_where", expr)
			g.Expect(f).To(failWith(errInvalidValue, expr, "Stdlib.Parsing.Parse_error"),
				"the parser stops at the first token it cannot use, before the lexer reaches the bad character")
		}
		_, f := c.do("VM.get_all_where", `false and field "nope"="x"`)
		g.Expect(f).NotTo(HaveOccurred(), "and short-circuits: the missing column is never read")
	})
	t.Run("every class xapi exposes get_all for has them", func(t *testing.T) {
		g := NewWithT(t)
		for _, class := range []string{"task", "pool", "host", "host_metrics", "host_cpu", "VM", "VM_metrics",
			"VM_guest_metrics", "SR", "PBD", "VDI", "VBD", "VIF", "network", "PIF", "PIF_metrics"} {
			g.Expect(where(class, "true")).To(Equal(keys(c.must(class+".get_all_records"))), class)
		}
		_, f := c.do("session.get_all_records_where", "true")
		g.Expect(f).To(failWith(errMessageMethodUnknown, "session.get_all_records_where"),
			"session has no get_all, so no get_all_records_where")
	})
}
