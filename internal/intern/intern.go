// Package intern keeps one copy of the strings that repeat from object to
// object in the operator's caches (a power state, a condition's reason, a
// host's name, a label), so that ten thousand cached objects do not hold
// ten thousand copies of each.
//
// Only values that repeat are worth it: a per-object value (a UUID, a
// name, a resourceVersion) interned costs an entry in the process's table
// and shares nothing.
package intern

import "unique"

// String returns the one copy of s the process keeps (s of any string
// type: a power state, a phase).
func String[S ~string](s S) S {
	if s == "" {
		return ""
	}
	return S(unique.Make(string(s)).Value())
}

// Strings returns a copy of in with every element interned.
func Strings(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = String(s)
	}
	return out
}

// Map returns a copy of in with its keys and values interned.
func Map(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[String(k)] = String(v)
	}
	return out
}
