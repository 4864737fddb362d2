package cache

import (
	toolscache "k8s.io/client-go/tools/cache"
)

// IndexFunc computes the values an object is indexed under.
type IndexFunc[T any] func(obj T) []string

// Store holds the objects of one XenAPI class by ref, with named indexes.
// It wraps client-go's thread-safe Indexer. The objects it returns are
// shared: callers must not modify them.
type Store[T any] struct {
	idx toolscache.Indexer
}

func newStore[T any](ref func(T) string, indexes map[string]IndexFunc[T]) *Store[T] {
	indexers := toolscache.Indexers{}
	for name, fn := range indexes {
		indexers[name] = func(obj any) ([]string, error) { return fn(obj.(T)), nil }
	}
	key := func(obj any) (string, error) { return ref(obj.(T)), nil }
	return &Store[T]{idx: toolscache.NewIndexer(key, indexers)}
}

// Get returns the object with ref.
func (s *Store[T]) Get(ref string) (T, bool) {
	obj, ok, _ := s.idx.GetByKey(ref)
	if !ok {
		var zero T
		return zero, false
	}
	return obj.(T), true
}

// ByIndex returns the objects an index holds under value.
func (s *Store[T]) ByIndex(index, value string) []T {
	objs, err := s.idx.ByIndex(index, value)
	if err != nil {
		panic(err) // an index the cache does not have: a programming error
	}
	return typed[T](objs)
}

// CountByIndex is how many objects an index holds under value.
func (s *Store[T]) CountByIndex(index, value string) int {
	keys, err := s.idx.IndexKeys(index, value)
	if err != nil {
		panic(err) // an index the cache does not have: a programming error
	}
	return len(keys)
}

// List returns every object.
func (s *Store[T]) List() []T { return typed[T](s.idx.List()) }

// Len is the number of objects.
func (s *Store[T]) Len() int { return len(s.idx.ListKeys()) }

// refs returns every object's ref.
func (s *Store[T]) refs() []string { return s.idx.ListKeys() }

func (s *Store[T]) put(obj T) {
	_ = s.idx.Update(obj) // keys and index functions never fail
}

func (s *Store[T]) remove(ref string) (T, bool) {
	old, ok := s.Get(ref)
	if ok {
		_ = s.idx.Delete(old)
	}
	return old, ok
}

func typed[T any](objs []any) []T {
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = o.(T)
	}
	return out
}
