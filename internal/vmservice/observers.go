package vmservice

import (
	"sync"

	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// Observers maps the VMs that XenVMs name in spec.vm to their owners, so
// that the cache wakes an owner when its VM changes while it carries no tag
// (observed, or not adoptable yet).
type Observers struct {
	mu sync.Mutex
	m  map[string]string
}

// Observe records that o watches the VM with uuid.
func (w *Observers) Observe(uuid string, o Owner) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]string{}
	}
	w.m[uuid] = o.Key()
}

// Forget drops what o observes.
func (w *Observers) Forget(o Owner) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for uuid, key := range w.m {
		if key == o.Key() {
			delete(w.m, uuid)
		}
	}
}

// ownerOf is the owner to wake for a VM: its tag's, else its observer's.
func (w *Observers) ownerOf(vm *xenapi.VM) string {
	if vm.IsSnapshot {
		return snapshotOwnerKey(vm)
	}
	if key := OwnerKey(vm); key != "" {
		return key
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[vm.UUID]
}
