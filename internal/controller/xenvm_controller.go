package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	virtv1alpha1 "github.com/xen-operator/xen-operator/api/v1alpha1"
	"github.com/xen-operator/xen-operator/internal/xenapi"
)

// XenVMReconciler installs a XenVM's VM once, keeps its configuration and
// power state as the spec says, reports what xapi says, and cleans up.
type XenVMReconciler struct {
	client.Client
	Conns    *Connections
	Recorder events.EventRecorder
	// Selector limits the XenHosts whose XenVMs this manager handles.
	Selector labels.Selector
	// RetryInterval is how long to wait after a connection failure.
	RetryInterval time.Duration

	// clones remembers the VMs this process cloned and has not tagged yet,
	// so that a retry does not clone again before the inventory has seen
	// the first clone. (After a restart the inventory's full sync has it.)
	clones sync.Map // types.UID -> VM ref
	// expect holds, per XenVM, what this process did that the cache or the
	// inventory may not show yet, as ReplicaSets keep "expectations".
	expect sync.Map // types.UID -> *expectation
}

// expectation is what the last reconcile of a XenVM changed: the next one
// overlays it on a stale view instead of doing the work again.
type expectation struct {
	until       time.Time
	provisioned bool
	nameLabel   string
	description *string
	otherConfig map[string]string
	operation   *virtv1alpha1.Operation
}

// expectationTTL bounds how long an expectation overrides the inventory:
// far longer than the event stream's delay, short enough to recover if an
// event was lost.
const expectationTTL = 30 * time.Second

func (r *XenVMReconciler) expectation(uid types.UID) *expectation {
	if v, ok := r.expect.Load(uid); ok {
		e := v.(*expectation)
		if time.Now().Before(e.until) {
			return e
		}
		r.expect.Delete(uid)
	}
	return nil
}

// expectFor records what a reconcile did.
func (r *XenVMReconciler) expectFor(uid types.UID, update func(*expectation)) {
	e := r.expectation(uid)
	if e == nil {
		e = &expectation{}
	}
	c := *e
	c.until = time.Now().Add(expectationTTL)
	update(&c)
	r.expect.Store(uid, &c)
}

// overlay applies what this process knows it did to a possibly stale record.
func (e *expectation) overlay(vm *xenapi.VM) {
	if e == nil {
		return
	}
	if e.provisioned {
		vm.IsTemplate = false
		delete(vm.OtherConfig, "disks")
	}
	if e.nameLabel != "" {
		vm.NameLabel = e.nameLabel
	}
	if e.description != nil {
		vm.NameDescription = *e.description
	}
	if e.otherConfig != nil {
		vm.OtherConfig = maps.Clone(e.otherConfig)
	}
}

// vmScope is what one reconcile works with.
type vmScope struct {
	obj  *virtv1alpha1.XenVM
	host *virtv1alpha1.XenHost
	xc   *xenapi.Client
	inv  *inventory
}

func (s *vmScope) cond(typ string, status metav1.ConditionStatus, reason, format string, args ...any) {
	setCondition(&s.obj.Status.Conditions, s.obj.Generation, typ, status, reason, format, args...)
}

func (s *vmScope) owner() types.NamespacedName {
	return types.NamespacedName{Namespace: s.obj.Namespace, Name: s.obj.Name}
}

// Reconcile implements the XenVM control loop.
func (r *XenVMReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	obj := &virtv1alpha1.XenVM{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	host := &virtv1alpha1.XenHost{}
	hostErr := r.Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: obj.Spec.HostRef.Name}, host)
	if hostErr == nil && !selects(r.Selector, host.Labels) {
		return ctrl.Result{}, nil // another shard's
	}
	if hostErr != nil && !apierrors.IsNotFound(hostErr) {
		return ctrl.Result{}, hostErr
	}
	if hostErr != nil {
		host = nil
	}

	if obj.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(obj, vmFinalizer) {
		// The finalizer goes on before anything is created in XenServer.
		patch := client.MergeFrom(obj.DeepCopy())
		controllerutil.AddFinalizer(obj, vmFinalizer)
		if err := r.Patch(ctx, obj, patch); err != nil {
			return ctrl.Result{}, err
		}
	}

	before := obj.DeepCopy()
	s := &vmScope{obj: obj, host: host}
	defer func() {
		r.summarize(s)
		if err := patchStatus(ctx, r.Client, before, obj, func(o client.Object) any { return o.(*virtv1alpha1.XenVM).Status }); err != nil {
			reterr = errors.Join(reterr, err)
		}
	}()

	if !obj.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}
	return r.reconcileNormal(ctx, s)
}

func (r *XenVMReconciler) retry() time.Duration {
	if r.RetryInterval > 0 {
		return r.RetryInterval
	}
	return 30 * time.Second
}

// connect gets the XenHost's client and inventory; it owns HostAvailable.
func (r *XenVMReconciler) connect(ctx context.Context, s *vmScope) bool {
	if s.host == nil {
		s.cond(virtv1alpha1.ConditionHostAvailable, metav1.ConditionFalse, virtv1alpha1.ReasonXenHostNotFound,
			"XenHost %s not found", s.obj.Spec.HostRef.Name)
		return false
	}
	xc, inv, err := r.Conns.Connect(ctx, s.host)
	if err == nil && !inv.waitSynced(ctx, 10*time.Second) {
		err = errors.New("waiting for the pool's inventory")
	}
	if err == nil {
		// The event stream fails first when xapi goes away.
		err = xc.WatchHealth()
	}
	if err != nil {
		s.cond(virtv1alpha1.ConditionHostAvailable, metav1.ConditionFalse, reasonFor(err),
			"XenHost %s: %s", s.host.Name, err.Error())
		return false
	}
	s.xc, s.inv = xc, inv
	s.cond(virtv1alpha1.ConditionHostAvailable, metav1.ConditionTrue, virtv1alpha1.ReasonConnected,
		"Connected to %s", xc.Coordinator())
	return true
}

// unavailable reports a failure to reach the pool in HostAvailable and
// waits: it is no reason for the controller's error backoff.
func (r *XenVMReconciler) unavailable(s *vmScope, err error) (ctrl.Result, error) {
	if xenapi.IsConnectionError(err) || xenapi.IsAuthenticationFailed(err) || errors.Is(err, xenapi.ErrClosed) {
		s.cond(virtv1alpha1.ConditionHostAvailable, metav1.ConditionFalse, reasonFor(err), "XenHost %s: %s", s.host.Name, err.Error())
		return ctrl.Result{RequeueAfter: r.retry()}, nil
	}
	return ctrl.Result{}, err
}

func (r *XenVMReconciler) reconcileNormal(ctx context.Context, s *vmScope) (res ctrl.Result, err error) {
	if !r.connect(ctx, s) {
		return ctrl.Result{RequeueAfter: r.retry()}, nil
	}
	defer func() {
		if err != nil {
			res, err = r.unavailable(s, err)
		}
	}()
	vm, res, err := r.ensureVM(ctx, s)
	if vm == nil || err != nil {
		return res, err
	}
	if res, err := r.finishOperation(ctx, s, vm); res != nil || err != nil {
		r.observe(s, vm)
		return *res, err
	}
	if err := r.applyConfig(ctx, s, vm); err != nil {
		r.observe(s, vm)
		return ctrl.Result{}, err
	}
	res, err = r.drivePower(ctx, s, vm)
	r.observe(s, vm)
	return res, err
}

// ensureVM finds the XenVM's VM or installs it; it owns Provisioned.
func (r *XenVMReconciler) ensureVM(ctx context.Context, s *vmScope) (*xenapi.VM, ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	obj := s.obj
	if uuid := obj.Status.UUID; uuid != "" {
		if vm := s.inv.vmByUUID(uuid); vm != nil {
			vm = clone(vm)
			r.expectation(obj.UID).overlay(vm)
			if !vm.IsTemplate && vm.OtherConfig["disks"] == "" && vm.OtherConfig[tagUID] == string(obj.UID) {
				s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionTrue, virtv1alpha1.ReasonProvisioned, "VM %s is installed", uuid)
				return vm, ctrl.Result{}, nil
			}
			// Installed only half-way: go on below.
		}
		// Not in the inventory: confirm with xapi before calling it gone; a
		// connection or authentication failure is never "gone".
		if _, err := s.xc.VMByUUID(ctx, uuid); !xenapi.IsUUIDInvalid(err) {
			if err != nil {
				return nil, ctrl.Result{}, err
			}
			return nil, ctrl.Result{RequeueAfter: time.Second}, nil // the inventory is catching up
		}
		if !obj.Spec.RecreateIfMissing {
			if isTrue(obj.Status.Conditions, virtv1alpha1.ConditionProvisioned) {
				r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonVMDeleted, "Observe",
					"VM %s was destroyed outside the operator; set spec.recreateIfMissing to install it again", uuid)
			}
			s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonVMDeleted,
				"VM %s was destroyed outside the operator; set spec.recreateIfMissing to install it again", uuid)
			obj.Status.PowerState, obj.Status.ResidentOn, obj.Status.IPAddresses, obj.Status.Operation = "", "", nil, nil
			return nil, ctrl.Result{}, nil
		}
		log.Info("Reinstalling VM destroyed outside the operator", "uuid", uuid)
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonVMDeleted, "Reinstall",
			"VM %s was destroyed outside the operator; installing it again", uuid)
		obj.Status.UUID, obj.Status.Operation = "", nil
	}

	vm := s.inv.vmFor(obj.UID)
	if vm == nil && obj.Status.UUID != "" {
		vm = s.inv.vmByUUID(obj.Status.UUID)
	}
	if ref, ok := r.clones.Load(obj.UID); ok && vm == nil {
		var err error
		if vm = s.inv.waitForVM(ctx, ref.(string), 5*time.Second); vm == nil {
			if vm, err = s.xc.VM(ctx, ref.(string)); err != nil && !xenapi.IsHandleInvalid(err) {
				return nil, ctrl.Result{}, err
			}
		}
	}
	if vm != nil {
		vm = clone(vm)
		r.expectation(obj.UID).overlay(vm)
		if obj.Status.UUID == "" && vm.OtherConfig[tagUID] == string(obj.UID) && !vm.IsTemplate {
			log.Info("Adopted VM", "uuid", vm.UUID)
		}
	} else {
		if s.xc.Saturated() {
			// Enough XenVMs already wait for a free operation slot of the pool:
			// come back rather than hold a worker other reconciles need.
			s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonProvisioning,
				"Waiting for the pool's operations in flight to go below its cap")
			return nil, ctrl.Result{RequeueAfter: time.Second}, nil
		}
		tmpl, ok := r.resolveTemplate(s)
		if !ok {
			return nil, ctrl.Result{RequeueAfter: time.Minute}, nil
		}
		s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonProvisioning,
			"Cloning template %q", tmpl.NameLabel)
		log.Info("Cloning template", "template", tmpl.NameLabel)
		ref, err := s.xc.CloneVM(ctx, tmpl.Ref, installName(obj.UID))
		if err != nil {
			return nil, ctrl.Result{}, r.provisionFailed(s, "clone", err)
		}
		r.clones.Store(obj.UID, ref)
		if vm = s.inv.waitForVM(ctx, ref, 5*time.Second); vm == nil {
			if vm, err = s.xc.VM(ctx, ref); err != nil {
				return nil, ctrl.Result{}, err
			}
		}
		vm = clone(vm)
	}

	// Tag before anything else, so that the VM is found again after a crash.
	_, srUUID, err := s.inv.poolInfo(ctx)
	if err != nil {
		return nil, ctrl.Result{}, err
	}
	if vm.OtherConfig[tagUID] != string(obj.UID) || strings.Contains(vm.OtherConfig["disks"], `sr=""`) {
		want := desiredOtherConfig(obj, vm.OtherConfig, srUUID)
		if err := s.xc.SetVMOtherConfig(ctx, vm.Ref, want); err != nil {
			return nil, ctrl.Result{}, r.provisionFailed(s, "tag", err)
		}
		vm.OtherConfig = want
		r.expectFor(obj.UID, func(e *expectation) { e.otherConfig = maps.Clone(want) })
	}
	r.clones.Delete(obj.UID)
	if vm.IsTemplate || vm.OtherConfig["disks"] != "" {
		if !vm.IsTemplate {
			// A provision that failed after xapi un-templated the VM: make it a
			// template again so that provision can run.
			if err := s.xc.SetVMIsTemplate(ctx, vm.Ref, true); err != nil {
				return nil, ctrl.Result{}, r.provisionFailed(s, "provision", err)
			}
		}
		if srUUID == "" {
			// A configuration problem of the pool: say so, look again later.
			_ = r.provisionFailed(s, "provision", errors.New("the pool has no default SR for the VM's disks"))
			return nil, ctrl.Result{RequeueAfter: time.Minute}, nil
		}
		log.Info("Provisioning VM", "uuid", vm.UUID)
		if err := s.xc.ProvisionVM(ctx, vm.Ref); err != nil {
			return nil, ctrl.Result{}, r.provisionFailed(s, "provision", err)
		}
		vm.IsTemplate = false
		delete(vm.OtherConfig, "disks")
		r.expectFor(obj.UID, func(e *expectation) {
			e.provisioned = true
			if e.otherConfig != nil {
				delete(e.otherConfig, "disks")
			}
		})
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, virtv1alpha1.ReasonProvisioned, "Provision",
			"Installed VM %s from template %q", vm.UUID, obj.Spec.Template)
	}
	obj.Status.UUID = vm.UUID
	s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionTrue, virtv1alpha1.ReasonProvisioned, "VM %s is installed", vm.UUID)
	return vm, ctrl.Result{}, nil
}

func clone(vm *xenapi.VM) *xenapi.VM {
	c := *vm
	c.OtherConfig = maps.Clone(vm.OtherConfig)
	return &c
}

// resolveTemplate finds exactly one template by name or UUID.
func (r *XenVMReconciler) resolveTemplate(s *vmScope) (*xenapi.VM, bool) {
	tmpls := s.inv.templates(s.obj.Spec.Template)
	switch len(tmpls) {
	case 1:
		return tmpls[0], true
	case 0:
		s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonTemplateNotFound,
			"No template is named %q or has that UUID", s.obj.Spec.Template)
	default:
		uuids := make([]string, len(tmpls))
		for i, t := range tmpls {
			uuids[i] = t.UUID
		}
		sort.Strings(uuids)
		s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonTemplateAmbiguous,
			"%d templates are named %q (%s): name one by UUID", len(tmpls), s.obj.Spec.Template, strings.Join(uuids, ", "))
	}
	return nil, false
}

func (r *XenVMReconciler) provisionFailed(s *vmScope, step string, err error) error {
	s.cond(virtv1alpha1.ConditionProvisioned, metav1.ConditionFalse, virtv1alpha1.ReasonProvisionFailed, "%s: %s", step, err.Error())
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonProvisionFailed, step, "%s", err.Error())
	return err
}

// desiredOtherConfig is the VM's other_config with the spec's entries, the
// operator's tags, and the provision disks pointed at the default SR.
func desiredOtherConfig(obj *virtv1alpha1.XenVM, current map[string]string, srUUID string) map[string]string {
	out := maps.Clone(current)
	if out == nil {
		out = map[string]string{}
	}
	for _, k := range strings.Split(current[tagManagedKeys], ",") {
		if _, keep := obj.Spec.OtherConfig[k]; k != "" && !keep {
			delete(out, k)
		}
	}
	maps.Copy(out, obj.Spec.OtherConfig)
	keys := slices.Sorted(maps.Keys(obj.Spec.OtherConfig))
	if len(keys) > 0 {
		out[tagManagedKeys] = strings.Join(keys, ",")
	} else {
		delete(out, tagManagedKeys)
	}
	out[tagUID] = string(obj.UID)
	out[tagOwner] = obj.Namespace + "/" + obj.Name
	if disks, ok := out["disks"]; ok && srUUID != "" {
		out["disks"] = strings.ReplaceAll(disks, `sr=""`, `sr="`+srUUID+`"`)
	}
	return out
}

// applyConfig makes the VM's name, description, other_config, affinity,
// VCPUs and memory match the spec; it owns RestartRequired.
func (r *XenVMReconciler) applyConfig(ctx context.Context, s *vmScope, vm *xenapi.VM) error {
	obj := s.obj
	name := obj.Spec.NameLabel
	if name == "" {
		name = obj.Name
	}
	if vm.NameLabel != name {
		if err := s.xc.SetVMNameLabel(ctx, vm.Ref, name); err != nil {
			return err
		}
		vm.NameLabel = name
		r.expectFor(obj.UID, func(e *expectation) { e.nameLabel = name })
	}
	// An empty description leaves the VM's (the template's) as it is.
	if d := obj.Spec.Description; d != "" && vm.NameDescription != d {
		if err := s.xc.SetVMNameDescription(ctx, vm.Ref, d); err != nil {
			return err
		}
		vm.NameDescription = d
		r.expectFor(obj.UID, func(e *expectation) { e.description = &d })
	}
	if want := desiredOtherConfig(obj, vm.OtherConfig, ""); !maps.Equal(want, vm.OtherConfig) {
		if err := s.xc.SetVMOtherConfig(ctx, vm.Ref, want); err != nil {
			return err
		}
		vm.OtherConfig = want
		r.expectFor(obj.UID, func(e *expectation) { e.otherConfig = maps.Clone(want) })
	}
	if obj.Spec.AffinityHost != "" {
		h := s.inv.hostByNameOrUUID(obj.Spec.AffinityHost)
		switch {
		case h == nil:
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, "AffinityHostNotFound", "Configure",
				"No host of the pool is named %q or has that UUID", obj.Spec.AffinityHost)
		case vm.Affinity != h.Ref:
			if err := s.xc.SetVMAffinity(ctx, vm.Ref, h.Ref); err != nil {
				return err
			}
			vm.Affinity = h.Ref
		}
	}

	vcpus, memory := int64(0), int64(0)
	if obj.Spec.VCPUs != nil {
		vcpus = int64(*obj.Spec.VCPUs)
	}
	if obj.Spec.Memory != nil {
		memory = obj.Spec.Memory.Value()
	}
	vcpusDiffer := vcpus > 0 && (vm.VCPUsMax != vcpus || vm.VCPUsAtStartup != vcpus)
	memoryDiffers := memory > 0 && (vm.MemoryStaticMax != memory || vm.MemoryDynamicMax != memory || vm.MemoryDynamicMin != memory)
	switch {
	case !vcpusDiffer && !memoryDiffers:
		s.cond(virtv1alpha1.ConditionRestartRequired, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationApplied,
			"The VM runs with the spec's configuration")
	case vm.PowerState != xenapi.PowerStateHalted:
		s.cond(virtv1alpha1.ConditionRestartRequired, metav1.ConditionTrue, virtv1alpha1.ReasonConfigurationPending,
			"The new vcpus or memory apply at the VM's next halt")
	default:
		if vcpusDiffer {
			if err := s.xc.SetVMVCPUs(ctx, vm.Ref, vcpus, vcpus); err != nil {
				return r.configFailed(s, err)
			}
			vm.VCPUsMax, vm.VCPUsAtStartup = vcpus, vcpus
		}
		if memoryDiffers {
			if err := s.xc.SetVMMemoryLimits(ctx, vm.Ref, min(vm.MemoryStaticMin, memory), memory, memory, memory); err != nil {
				return r.configFailed(s, err)
			}
			vm.MemoryStaticMax, vm.MemoryDynamicMax, vm.MemoryDynamicMin = memory, memory, memory
		}
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "Reconfigured", "Configure",
			"Set %d VCPUs and %d bytes of memory", vm.VCPUsAtStartup, vm.MemoryStaticMax)
		s.cond(virtv1alpha1.ConditionRestartRequired, metav1.ConditionFalse, virtv1alpha1.ReasonConfigurationApplied,
			"The VM runs with the spec's configuration")
	}
	return nil
}

func (r *XenVMReconciler) configFailed(s *vmScope, err error) error {
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, "ConfigurationFailed", "Configure", "%s", err.Error())
	return err
}

// desiredPower is spec.powerState with its default.
func desiredPower(obj *virtv1alpha1.XenVM) virtv1alpha1.PowerState {
	if obj.Spec.PowerState == "" {
		return virtv1alpha1.PowerStateRunning
	}
	return obj.Spec.PowerState
}

func powerOffMode(obj *virtv1alpha1.XenVM) virtv1alpha1.PowerOffMode {
	if obj.Spec.PowerOffMode == "" {
		return virtv1alpha1.PowerOffTrySoft
	}
	return obj.Spec.PowerOffMode
}

func softTimeout(obj *virtv1alpha1.XenVM) time.Duration {
	if obj.Spec.SoftShutdownTimeout == nil {
		return 2 * time.Minute
	}
	return obj.Spec.SoftShutdownTimeout.Duration
}

// startStep begins a power operation as an Async task and records it in
// status.operation; the task's end wakes the reconcile through the event stream.
func (r *XenVMReconciler) startStep(ctx context.Context, s *vmScope, vm *xenapi.VM, step powerStep) error {
	var method string
	var args []any
	switch step.op {
	case opStart, opStartPaused:
		method, args = "VM.start", []any{vm.Ref, step.op == opStartPaused, false}
	case opResume, opResumePaused:
		method, args = "VM.resume", []any{vm.Ref, step.op == opResumePaused, false}
	default:
		method, args = "VM."+step.op, []any{vm.Ref}
	}
	ctrl.LoggerFrom(ctx).Info("Starting power operation", "operation", step.op, "uuid", vm.UUID)
	ref, err := s.xc.Begin(ctx, method, args...)
	if err != nil {
		return err
	}
	s.inv.followTask(ref, s.owner())
	op := &virtv1alpha1.Operation{Name: step.op, StartTime: metav1.Now(), TaskRef: ref}
	s.obj.Status.Operation = op
	r.expectFor(s.obj.UID, func(e *expectation) { e.operation = op.DeepCopy() })
	return nil
}

// clearOperation forgets the operation in flight.
func (r *XenVMReconciler) clearOperation(s *vmScope) {
	if op := s.obj.Status.Operation; op != nil && op.TaskRef != "" {
		s.inv.forgetTask(op.TaskRef)
	}
	s.obj.Status.Operation = nil
	r.expectFor(s.obj.UID, func(e *expectation) { e.operation = nil })
}

// finishOperation follows the operation in status.operation. It returns a
// result when the reconcile is to stop here (the task still runs).
func (r *XenVMReconciler) finishOperation(ctx context.Context, s *vmScope, vm *xenapi.VM) (*ctrl.Result, error) {
	if e := r.expectation(s.obj.UID); e != nil && e.operation != nil &&
		(s.obj.Status.Operation == nil || s.obj.Status.Operation.TaskRef != e.operation.TaskRef) {
		// The cached status does not show the operation this process began yet.
		s.obj.Status.Operation = e.operation.DeepCopy()
	}
	op := s.obj.Status.Operation
	if op == nil || op.TaskRef == "" {
		s.obj.Status.Operation = nil
		return nil, nil
	}
	s.inv.followTask(op.TaskRef, s.owner())
	task, gone := s.inv.task(op.TaskRef)
	if task == nil && !gone {
		// No event for the task yet; after a while, ask xapi directly (the
		// operator may have restarted since the task began).
		if time.Since(op.StartTime.Time) < 30*time.Second {
			return &ctrl.Result{RequeueAfter: 10 * time.Second}, nil
		}
		t, err := s.xc.Task(ctx, op.TaskRef)
		switch {
		case xenapi.IsHandleInvalid(err):
			gone = true
		case err != nil:
			return &ctrl.Result{}, err
		default:
			task = t
		}
	}
	if gone {
		// xapi lost the task (collected, or restarted): look at the VM again.
		r.clearOperation(s)
		return nil, nil
	}
	if task.Status == xenapi.TaskPending {
		op.Progress = int32(task.Progress * 100)
		if op.Name == opCleanShutdown && powerOffMode(s.obj) == virtv1alpha1.PowerOffTrySoft &&
			time.Since(op.StartTime.Time) >= softTimeout(s.obj) {
			// The guest took too long: power it off (this interrupts the clean shutdown).
			r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "SoftShutdownTimedOut", "HardShutdown",
				"The guest did not shut down within %s; powering the VM off", softTimeout(s.obj))
			if err := s.xc.HardShutdownVM(ctx, vm.Ref); err != nil && !xenapi.IsBadPowerState(err) {
				return &ctrl.Result{}, err
			}
			vm.PowerState = xenapi.PowerStateHalted
			return &ctrl.Result{RequeueAfter: time.Second}, nil
		}
		wait := 30 * time.Second
		if op.Name == opCleanShutdown && powerOffMode(s.obj) == virtv1alpha1.PowerOffTrySoft {
			wait = min(wait, time.Until(op.StartTime.Add(softTimeout(s.obj)))+10*time.Millisecond)
		}
		return &ctrl.Result{RequeueAfter: wait}, nil
	}
	err := s.xc.Finish(ctx, task)
	r.clearOperation(s)
	if err == nil {
		vm.PowerState = resultOf(op.Name, vm.PowerState)
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "PowerStateChanged", op.Name, "VM is %s", vm.PowerState)
		return nil, nil
	}
	return r.stepFailed(ctx, s, vm, op.Name, err)
}

// resultOf is the state a successful operation leaves the VM in.
func resultOf(op string, current xenapi.PowerState) xenapi.PowerState {
	switch op {
	case opStart, opResume, opUnpause:
		return xenapi.PowerStateRunning
	case opStartPaused, opResumePaused, opPause:
		return xenapi.PowerStatePaused
	case opSuspend:
		return xenapi.PowerStateSuspended
	case opCleanShutdown, opHardShutdown:
		return xenapi.PowerStateHalted
	}
	return current
}

// stepFailed handles a failed power operation; nil result means "go on".
func (r *XenVMReconciler) stepFailed(ctx context.Context, s *vmScope, vm *xenapi.VM, op string, err error) (*ctrl.Result, error) {
	xe, _ := xenapi.AsError(err)
	switch {
	case xenapi.IsBadPowerState(err):
		// Someone else moved the VM: take xapi's word for where it is now.
		if actual := xe.Param(2); actual != "" {
			vm.PowerState = xenapi.PowerState(strings.ToUpper(actual[:1]) + actual[1:])
		}
		return nil, nil
	case xenapi.IsLacksFeature(err) && op == opCleanShutdown && powerOffMode(s.obj) == virtv1alpha1.PowerOffTrySoft:
		r.Recorder.Eventf(s.obj, nil, corev1.EventTypeNormal, "NoGuestAgent", "HardShutdown",
			"The guest cannot shut down cleanly (no guest agent); powering the VM off")
		if err := s.xc.HardShutdownVM(ctx, vm.Ref); err != nil && !xenapi.IsBadPowerState(err) {
			return &ctrl.Result{}, err
		}
		vm.PowerState = xenapi.PowerStateHalted
		return nil, nil
	case xenapi.IsLacksFeature(err):
		s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonWaitingForGuest,
			"%s needs the guest agent, which has not reported yet", op)
		return &ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	case xenapi.IsOtherOperationInProgress(err), xe != nil && xe.Code == xenapi.CodeTaskCancelled:
		return &ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	case xenapi.IsHandleInvalid(err):
		return &ctrl.Result{RequeueAfter: time.Second}, nil // the VM is gone: ensureVM will say so
	}
	s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonPowerOperationFailed,
		"%s failed: %s", op, err.Error())
	r.Recorder.Eventf(s.obj, nil, corev1.EventTypeWarning, virtv1alpha1.ReasonPowerOperationFailed, op, "%s", err.Error())
	return &ctrl.Result{}, err
}

// drivePower starts the next operation towards spec.powerState; it owns
// PowerStateSynced.
func (r *XenVMReconciler) drivePower(ctx context.Context, s *vmScope, vm *xenapi.VM) (ctrl.Result, error) {
	want := desiredPower(s.obj)
	step, ok := nextStep(vm.PowerState, want, powerOffMode(s.obj))
	if !ok {
		s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionTrue, virtv1alpha1.ReasonInSync, "VM is %s", want)
		return ctrl.Result{}, nil
	}
	if err := r.startStep(ctx, s, vm, step); err != nil {
		res, err := r.stepFailed(ctx, s, vm, step.op, err)
		if res == nil {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return *res, err
	}
	s.cond(virtv1alpha1.ConditionPowerStateSynced, metav1.ConditionFalse, virtv1alpha1.ReasonTransitioning,
		"Moving the VM from %s to %s: %s", vm.PowerState, want, step.op)
	return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
}

// observe reports what xapi says of the VM.
func (r *XenVMReconciler) observe(s *vmScope, vm *xenapi.VM) {
	st := &s.obj.Status
	if current := s.inv.vm(vm.Ref); current != nil && current.PowerState == vm.PowerState {
		vm = current // the inventory's record is as fresh and has resident_on
	}
	st.PowerState = virtv1alpha1.PowerState(vm.PowerState)
	st.ResidentOn = ""
	if h := s.inv.host(vm.ResidentOn); h != nil && vm.PowerState != xenapi.PowerStateHalted {
		st.ResidentOn = h.NameLabel
	}
	st.IPAddresses = nil
	if g := s.inv.guest(vm); g != nil && vm.PowerState == xenapi.PowerStateRunning {
		st.IPAddresses = ipAddresses(g.Networks)
	}
}

// ipAddresses lists the guest's addresses from VM_guest_metrics.networks,
// IPv4 first, by device.
func ipAddresses(networks map[string]string) []string {
	var v4, v6 []string
	seen := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(networks)) {
		ip := networks[k]
		if ip == "" || seen[ip] {
			continue
		}
		switch {
		case strings.HasSuffix(k, "/ip"), strings.Contains(k, "/ipv4/"):
			v4 = append(v4, ip)
		case strings.Contains(k, "/ipv6/"):
			v6 = append(v6, ip)
		default:
			continue
		}
		seen[ip] = true
	}
	return append(v4, v6...)
}

// summarize sets Ready, the phase and observedGeneration.
func (r *XenVMReconciler) summarize(s *vmScope) {
	obj := s.obj
	st := &obj.Status
	st.ObservedGeneration = obj.Generation
	get := func(t string) *metav1.Condition { return meta.FindStatusCondition(st.Conditions, t) }
	ready := true
	reason, msg := virtv1alpha1.ReasonInSync, fmt.Sprintf("VM is %s", desiredPower(obj))
	for _, t := range []string{virtv1alpha1.ConditionHostAvailable, virtv1alpha1.ConditionProvisioned, virtv1alpha1.ConditionPowerStateSynced} {
		if c := get(t); c == nil || c.Status != metav1.ConditionTrue {
			ready = false
			if c != nil {
				reason, msg = c.Reason, c.Message
			} else {
				reason, msg = virtv1alpha1.ReasonTransitioning, t+" is not known yet"
			}
			break
		}
	}
	if !obj.DeletionTimestamp.IsZero() {
		ready, reason, msg = false, virtv1alpha1.ReasonDeleting, "The XenVM is being deleted"
	}
	status := metav1.ConditionTrue
	if !ready {
		status = metav1.ConditionFalse
	}
	s.cond(virtv1alpha1.ConditionReady, status, reason, "%s", msg)

	prov := get(virtv1alpha1.ConditionProvisioned)
	switch {
	case !obj.DeletionTimestamp.IsZero():
		st.Phase = virtv1alpha1.PhaseDeleting
	case prov != nil && prov.Status == metav1.ConditionFalse && prov.Reason != virtv1alpha1.ReasonProvisioning:
		st.Phase = virtv1alpha1.PhaseFailed
	case st.UUID == "":
		if prov == nil {
			st.Phase = virtv1alpha1.PhasePending
		} else {
			st.Phase = virtv1alpha1.PhaseProvisioning
		}
	case st.Operation != nil:
		switch st.Operation.Name {
		case opCleanShutdown, opHardShutdown:
			st.Phase = virtv1alpha1.PhaseStopping
		case opSuspend:
			st.Phase = virtv1alpha1.PhaseSuspending
		default:
			st.Phase = virtv1alpha1.PhaseStarting
		}
	default:
		switch st.PowerState {
		case virtv1alpha1.PowerStateRunning:
			st.Phase = virtv1alpha1.PhaseRunning
		case virtv1alpha1.PowerStateHalted:
			st.Phase = virtv1alpha1.PhaseHalted
		case virtv1alpha1.PowerStateSuspended:
			st.Phase = virtv1alpha1.PhaseSuspended
		case virtv1alpha1.PowerStatePaused:
			st.Phase = virtv1alpha1.PhasePaused
		}
	}
}

// reconcileDelete shuts the VM down and destroys it with its disks
// (Delete), or untags it (Retain); the finalizer comes off only then.
func (r *XenVMReconciler) reconcileDelete(ctx context.Context, s *vmScope) (res ctrl.Result, err error) {
	obj := s.obj
	defer func() {
		if err != nil && s.host != nil {
			res, err = r.unavailable(s, err)
		}
	}()
	log := ctrl.LoggerFrom(ctx)
	removeFinalizer := func() (ctrl.Result, error) {
		if controllerutil.ContainsFinalizer(obj, vmFinalizer) {
			patch := client.MergeFrom(obj.DeepCopy())
			controllerutil.RemoveFinalizer(obj, vmFinalizer)
			return ctrl.Result{}, r.Patch(ctx, obj, patch)
		}
		return ctrl.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(obj, vmFinalizer) {
		return ctrl.Result{}, nil
	}
	if s.host == nil && obj.Status.UUID == "" {
		return removeFinalizer() // nothing was installed
	}
	if !r.connect(ctx, s) {
		// Deleting now could leak the VM: wait, and say why.
		return ctrl.Result{RequeueAfter: r.retry()}, nil
	}
	vm := s.inv.vmFor(obj.UID)
	if vm == nil && obj.Status.UUID != "" {
		vm = s.inv.vmByUUID(obj.Status.UUID)
	}
	if vm == nil {
		return removeFinalizer()
	}
	vm = clone(vm)

	if obj.Spec.DeletionPolicy == virtv1alpha1.DeletionPolicyRetain {
		oc := maps.Clone(vm.OtherConfig)
		delete(oc, tagUID)
		delete(oc, tagOwner)
		delete(oc, tagManagedKeys)
		if err := s.xc.SetVMOtherConfig(ctx, vm.Ref, oc); err != nil && !xenapi.IsHandleInvalid(err) {
			return ctrl.Result{}, err
		}
		log.Info("Released VM", "uuid", vm.UUID)
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "Retained", "Release", "VM %s left as it is and no longer managed", vm.UUID)
		return removeFinalizer()
	}

	if vm.PowerState != xenapi.PowerStateHalted {
		r.clearOperation(s)
		log.Info("Powering off VM for deletion", "uuid", vm.UUID)
		// A hard shutdown interrupts whatever the VM was doing.
		if err := s.xc.HardShutdownVM(ctx, vm.Ref); err != nil && !xenapi.IsBadPowerState(err) && !xenapi.IsHandleInvalid(err) {
			if xenapi.IsOtherOperationInProgress(err) {
				return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
			}
			return ctrl.Result{}, err
		}
	}
	// Disks first: a crash in between leaves a tagged VM to finish with.
	for _, vbdRef := range vm.VBDs {
		vbd, err := s.xc.VBD(ctx, vbdRef)
		if xenapi.IsHandleInvalid(err) {
			continue
		}
		if err != nil {
			return ctrl.Result{}, err
		}
		if vbd.Type != "Disk" || vbd.VDI == "" {
			continue
		}
		if err := s.xc.DestroyVDI(ctx, vbd.VDI); err != nil && !xenapi.IsHandleInvalid(err) {
			return ctrl.Result{}, err
		}
	}
	if err := s.xc.DestroyVM(ctx, vm.Ref); err != nil && !xenapi.IsHandleInvalid(err) {
		if xenapi.IsOtherOperationInProgress(err) || xenapi.IsBadPowerState(err) {
			return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
		}
		return ctrl.Result{}, err
	}
	r.expect.Delete(obj.UID)
	log.Info("Destroyed VM", "uuid", vm.UUID)
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "Destroyed", "Destroy", "VM %s and its disks destroyed", vm.UUID)
	return removeFinalizer()
}

// SetupWithManager registers the controller: XenVMs, their XenHosts, and
// the VM changes the event stream reports.
func (r *XenVMReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &virtv1alpha1.XenVM{}, indexHostRef,
		func(o client.Object) []string { return []string{o.(*virtv1alpha1.XenVM).Spec.HostRef.Name} }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&virtv1alpha1.XenVM{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&virtv1alpha1.XenHost{}, handler.EnqueueRequestsFromMapFunc(r.vmsForHost),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		WatchesRawSource(source.Channel(r.Conns.VMEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(opts).
		Named("xenvm").
		Complete(r)
}

func (r *XenVMReconciler) vmsForHost(ctx context.Context, o client.Object) []reconcile.Request {
	vms := &virtv1alpha1.XenVMList{}
	if err := r.List(ctx, vms, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexHostRef: o.GetName()}); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(vms.Items))
	for _, vm := range vms.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: vm.Namespace, Name: vm.Name}})
	}
	return out
}
