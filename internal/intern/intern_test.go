package intern

import (
	"strings"
	"testing"
	"unsafe"
)

type powerState string

// Equal values read from two places come back as one copy, of their own
// string type; slices and maps come back as copies, the input untouched.
func TestOneCopy(t *testing.T) {
	a, b := "Running", strings.Clone("Running")
	if unsafe.StringData(a) == unsafe.StringData(b) {
		t.Fatal("the test needs two copies to begin with")
	}
	if x, y := String(powerState(a)), String(powerState(b)); x != "Running" || unsafe.StringData(string(x)) != unsafe.StringData(string(y)) {
		t.Errorf("String: %q and %q are not one copy", x, y)
	}
	if String("") != "" || Strings(nil) != nil || Map(nil) != nil {
		t.Error("empty values stay empty")
	}

	in := []string{strings.Clone("eth0")}
	out := Strings(in)
	if unsafe.StringData(out[0]) != unsafe.StringData(String("eth0")) || &in[0] == &out[0] {
		t.Error("Strings: not an interned copy")
	}
	m := map[string]string{strings.Clone("k"): strings.Clone("v")}
	mc := Map(m)
	for k, v := range mc {
		if unsafe.StringData(k) != unsafe.StringData(String("k")) || unsafe.StringData(v) != unsafe.StringData(String("v")) {
			t.Error("Map: keys and values not interned")
		}
	}
	mc["other"] = "x"
	if len(m) != 1 {
		t.Error("Map changed its input")
	}
}
