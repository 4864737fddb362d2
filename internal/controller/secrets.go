package controller

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SecretReader reads the data of the Secrets the XenHosts (credentials, CA)
// and XenVMs (spec.cloudInit) name. No Secret's data is cached in an
// informer: the manager watches Secrets metadata-only, and a Secret's data
// is read from the API server by name. It is read again only when that
// watch shows another resourceVersion than the one read last (a change or a
// rotation, whose event also wakes the objects that name the Secret), or
// does not show the Secret: a reconcile that finds the version it read
// already makes no request.
type SecretReader struct {
	// API reads a Secret with its data: the manager's API reader.
	API client.Reader
	// Watch is the manager's cache, whose Secrets are metadata-only; nil
	// reads every time.
	Watch client.Reader

	mu    sync.Mutex
	read  map[types.NamespacedName]secretRead
	swept time.Time
}

// secretRead is a Secret's data as read at a resourceVersion.
type secretRead struct {
	version string
	data    map[string][]byte
	used    time.Time
}

// forgetSecretsAfter bounds how long the data of a Secret nothing reads
// any more is kept: the objects that name one read it at least every few
// minutes.
const forgetSecretsAfter = 15 * time.Minute

// NewSecretReader reads Secrets through api, once per version watch shows.
func NewSecretReader(api, watch client.Reader) *SecretReader {
	return &SecretReader{API: api, Watch: watch, read: map[types.NamespacedName]secretRead{}}
}

// Data returns the data of the Secret key names, read-only; a missing
// Secret is the API server's NotFound.
func (r *SecretReader) Data(ctx context.Context, key types.NamespacedName) (map[string][]byte, error) {
	if version := r.watched(ctx, key); version != "" {
		if data, ok := r.known(key, version); ok {
			return data, nil
		}
	}
	s := &corev1.Secret{}
	if err := r.API.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			r.Forget(key)
		}
		return nil, err
	}
	r.remember(key, s.ResourceVersion, s.Data)
	return s.Data, nil
}

// Forget drops what was read of a Secret.
func (r *SecretReader) Forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.read, key)
}

// watched is the Secret's resourceVersion as the metadata-only watch shows
// it, "" when it does not (yet, or outside the watched namespaces).
func (r *SecretReader) watched(ctx context.Context, key types.NamespacedName) string {
	if r.Watch == nil {
		return ""
	}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.Watch.Get(ctx, key, m); err != nil {
		return ""
	}
	return m.ResourceVersion
}

func (r *SecretReader) known(key types.NamespacedName, version string) (map[string][]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.read[key]
	if !ok || e.version != version {
		return nil, false
	}
	e.used = time.Now()
	r.read[key] = e
	r.sweep(e.used)
	return e.data, true
}

func (r *SecretReader) remember(key types.NamespacedName, version string, data map[string][]byte) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.read[key] = secretRead{version: version, data: data, used: now}
	r.sweep(now)
}

// sweep drops the Secrets read last more than forgetSecretsAfter ago; r.mu
// is held.
func (r *SecretReader) sweep(now time.Time) {
	if now.Sub(r.swept) > forgetSecretsAfter {
		r.swept = now
		for k, e := range r.read {
			if now.Sub(e.used) > forgetSecretsAfter {
				delete(r.read, k)
			}
		}
	}
}
