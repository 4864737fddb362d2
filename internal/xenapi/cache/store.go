package cache

import (
	"slices"
	"sync"
)

// IndexFunc computes the values an object is indexed under.
type IndexFunc[T any] func(obj T) []string

// Store holds the objects of one XenAPI class by ref, with named indexes.
// The objects it returns are shared: callers must not modify them.
//
// It is client-go's thread-safe indexer made lean for this cache's
// indexes, where most values (a UUID, a name, the VM of a VBD) hold one
// object: client-go keeps a set (a map of its own, some 200 bytes) per
// value, 10 MB of sets at ten thousand VMs; a bucket here keeps one ref
// inline and makes a set only for a value that holds several.
type Store[T any] struct {
	ref func(T) string

	mu      sync.RWMutex
	objs    map[string]T
	indexes map[string]*index[T]
}

type index[T any] struct {
	fn     IndexFunc[T]
	values map[string]bucket
}

// bucket is the refs an index holds under one value: one inline, or a set
// once there are several. Refs are never empty.
type bucket struct {
	one  string
	many map[string]struct{}
}

func (b bucket) add(ref string) bucket {
	switch {
	case b.many != nil:
		b.many[ref] = struct{}{}
	case b.one == "" || b.one == ref:
		b.one = ref
	default:
		b.many, b.one = map[string]struct{}{b.one: {}, ref: {}}, ""
	}
	return b
}

// remove takes ref out; a set left with one ref goes back inline (Go maps
// do not shrink).
func (b bucket) remove(ref string) bucket {
	if b.many == nil {
		if b.one == ref {
			b.one = ""
		}
		return b
	}
	delete(b.many, ref)
	if len(b.many) == 1 {
		for last := range b.many {
			return bucket{one: last}
		}
	}
	return b
}

func (b bucket) len() int {
	if b.many != nil {
		return len(b.many)
	}
	if b.one != "" {
		return 1
	}
	return 0
}

func newStore[T any](ref func(T) string, indexes map[string]IndexFunc[T]) *Store[T] {
	s := &Store[T]{ref: ref, objs: map[string]T{}, indexes: map[string]*index[T]{}}
	for name, fn := range indexes {
		s.indexes[name] = &index[T]{fn: fn, values: map[string]bucket{}}
	}
	return s
}

// Get returns the object with ref.
func (s *Store[T]) Get(ref string) (T, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	obj, ok := s.objs[ref]
	return obj, ok
}

// ByIndex returns the objects an index holds under value.
func (s *Store[T]) ByIndex(index, value string) []T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.index(index).values[value]
	if b.many == nil {
		if b.one == "" {
			return nil
		}
		return []T{s.objs[b.one]}
	}
	out := make([]T, 0, len(b.many))
	for ref := range b.many {
		out = append(out, s.objs[ref])
	}
	return out
}

// CountByIndex is how many objects an index holds under value.
func (s *Store[T]) CountByIndex(index, value string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index(index).values[value].len()
}

func (s *Store[T]) index(name string) *index[T] {
	ix, ok := s.indexes[name]
	if !ok {
		panic("cache: no index " + name) // a programming error
	}
	return ix
}

// List returns every object.
func (s *Store[T]) List() []T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]T, 0, len(s.objs))
	for _, obj := range s.objs {
		out = append(out, obj)
	}
	return out
}

// Len is the number of objects.
func (s *Store[T]) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.objs)
}

// refs returns every object's ref.
func (s *Store[T]) refs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.objs))
	for ref := range s.objs {
		out = append(out, ref)
	}
	return out
}

func (s *Store[T]) put(obj T) {
	ref := s.ref(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.objs[ref]
	s.objs[ref] = obj
	for _, ix := range s.indexes {
		var before []string
		if had {
			before = ix.fn(old)
		}
		after := ix.fn(obj)
		if slices.Equal(before, after) {
			continue
		}
		ix.drop(before, ref)
		for _, v := range after {
			ix.values[v] = ix.values[v].add(ref)
		}
	}
}

func (s *Store[T]) remove(ref string) (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.objs[ref]
	if !ok {
		return old, false
	}
	delete(s.objs, ref)
	for _, ix := range s.indexes {
		ix.drop(ix.fn(old), ref)
	}
	return old, true
}

// drop takes ref out of the values it was indexed under.
func (ix *index[T]) drop(values []string, ref string) {
	for _, v := range values {
		if b := ix.values[v].remove(ref); b.len() == 0 {
			delete(ix.values, v)
		} else {
			ix.values[v] = b
		}
	}
}
