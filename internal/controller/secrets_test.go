package controller

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// secretStore is a client.Reader of Secrets by name: with data for the API
// server, metadata only for the watch; it counts the reads of data.
type secretStore struct {
	secrets map[string]*corev1.Secret
	reads   int
}

func (s *secretStore) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	sec, ok := s.secrets[key.Name]
	if !ok {
		return apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
	}
	switch o := obj.(type) {
	case *corev1.Secret:
		s.reads++
		sec.DeepCopyInto(o)
	case *metav1.PartialObjectMetadata:
		o.ObjectMeta = *sec.ObjectMeta.DeepCopy()
	}
	return nil
}

func (s *secretStore) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return nil
}

// A Secret's data is read from the API server once per version the watch
// shows: a rotation is read at once, a version the watch does not show yet
// (or a Secret it does not show) is read every time.
func TestSecretsReadOncePerVersion(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	secret := func(version, password string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds", ResourceVersion: version},
			Data: map[string][]byte{"password": []byte(password)}}
	}
	api := &secretStore{secrets: map[string]*corev1.Secret{"creds": secret("1", "old")}}
	watch := &secretStore{secrets: map[string]*corev1.Secret{}}
	r := NewSecretReader(api, watch)
	key := types.NamespacedName{Namespace: "ns", Name: "creds"}
	read := func() string {
		data, err := r.Data(ctx, key)
		g.Expect(err).NotTo(HaveOccurred())
		return string(data["password"])
	}

	for _, step := range []struct {
		name      string
		api       *corev1.Secret // nil: deleted
		watch     *corev1.Secret // nil: not shown
		want      string
		wantReads int
	}{
		{name: "not watched yet: read", api: secret("1", "old"), want: "old", wantReads: 1},
		{name: "not watched yet: read again", api: secret("1", "old"), want: "old", wantReads: 2},
		{name: "watched at the version read: no request", api: secret("1", "old"), watch: secret("1", ""), want: "old", wantReads: 2},
		{name: "again", api: secret("1", "old"), watch: secret("1", ""), want: "old", wantReads: 2},
		{name: "the watch lags a rotation: the version read serves", api: secret("2", "new"), watch: secret("1", ""), want: "old", wantReads: 2},
		{name: "the rotation's event: read", api: secret("2", "new"), watch: secret("2", ""), want: "new", wantReads: 3},
		{name: "then served", api: secret("2", "new"), watch: secret("2", ""), want: "new", wantReads: 3},
	} {
		api.secrets["creds"], watch.secrets = step.api, map[string]*corev1.Secret{}
		if step.watch != nil {
			watch.secrets["creds"] = step.watch
		}
		g.Expect(read()).To(Equal(step.want), step.name)
		g.Expect(api.reads).To(Equal(step.wantReads), step.name)
	}

	delete(api.secrets, "creds")
	watch.secrets = map[string]*corev1.Secret{}
	_, err := r.Data(ctx, key)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a deleted Secret is not found")
	g.Expect(r.read).To(BeEmpty(), "and forgotten")
}
