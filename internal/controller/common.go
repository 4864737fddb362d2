package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// hostFinalizer releases a XenHost's session when it is deleted.
	hostFinalizer = "virt.xen-operator.io/xenhost"
	// vmFinalizer shuts down and destroys (or releases) a XenVM's VM.
	vmFinalizer = "virt.xen-operator.io/xenvm"

	indexHostRef   = "spec.hostRef.name"
	indexSecretRef = "spec.secretRefs" //nolint:gosec // a field index name, not a credential
)

func setCondition(conds *[]metav1.Condition, generation int64, typ string, status metav1.ConditionStatus, reason, format string, args ...any) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: fmt.Sprintf(format, args...), ObservedGeneration: generation,
	})
}

// patchStatus writes obj's status if it differs from before's: the one
// status write of a reconcile, deferred.
func patchStatus(ctx context.Context, c client.Client, before, obj client.Object, statusOf func(client.Object) any) error {
	if equality.Semantic.DeepEqual(statusOf(before), statusOf(obj)) {
		return nil
	}
	return client.IgnoreNotFound(c.Status().Patch(ctx, obj, client.MergeFrom(before)))
}

// selects tells whether a selector (nil: everything) matches a XenHost's labels.
func selects(sel labels.Selector, l map[string]string) bool {
	return sel == nil || sel.Matches(labels.Set(l))
}
