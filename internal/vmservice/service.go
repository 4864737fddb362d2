package vmservice

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xen-operator/xen-operator/internal/xenapi"
	"github.com/xen-operator/xen-operator/internal/xenapi/cache"
)

// PowerOp is one power operation on a VM.
type PowerOp string

// The power operations.
const (
	OpStart         PowerOp = "start"
	OpStartPaused   PowerOp = "start_paused"
	OpPause         PowerOp = "pause"
	OpUnpause       PowerOp = "unpause"
	OpSuspend       PowerOp = "suspend"
	OpResume        PowerOp = "resume"
	OpResumePaused  PowerOp = "resume_paused"
	OpCleanShutdown PowerOp = "clean_shutdown"
	OpHardShutdown  PowerOp = "hard_shutdown"
)

// Config is what Configure keeps a VM at. Empty fields leave the VM's value.
type Config struct {
	NameLabel   string
	Description string
	// OtherConfig entries are the user's; the owner's tags are kept.
	OtherConfig map[string]string
	// Affinity is the host the VM prefers (nil leaves it, unless
	// ClearAffinity).
	Affinity *xenapi.Host
	// ClearAffinity removes the VM's affinity when Affinity is nil.
	ClearAffinity bool
	// Protect blocks VM.destroy for other tools; false lifts the
	// operator's own block.
	Protect bool
	// Tags are the VM's tags (nil leaves them).
	Tags []string
	// HARestartPriority is the VM's ha_restart_priority (nil leaves it).
	HARestartPriority *string
}

// destroyBlock is the reason the operator gives in blocked_operations.
func destroyBlock(o Owner) string { return "xen-operator: protected by XenVM " + o.Key() }

// blockedByUs tells whether the VM's destroy block is the operator's own.
func blockedByUs(vm *xenapi.VM) bool {
	return strings.HasPrefix(vm.BlockedOperations["destroy"], "xen-operator: ")
}

// Service is what the reconcilers do to a pool. Every method takes the VM
// as the cache shows it; none waits for the cache.
type Service interface {
	// CanInstall tells whether the pool has room for o's install now;
	// otherwise o waits in line and is woken when room frees up.
	CanInstall(o Owner) bool
	// Clone clones template under o's install name and returns the new VM's
	// ref. The cache shows the VM, untagged, once its event arrives; o is
	// woken then. When the call's outcome is unknown (the connection broke),
	// the next Clone for o first looks for a clone that did happen.
	Clone(ctx context.Context, template *xenapi.VM, o Owner) (string, error)
	// Claim tags a clone with o and sets its provision disks' SRs and root
	// size as plan says.
	Claim(ctx context.Context, vm *xenapi.VM, o Owner, entries map[string]string, plan DiskPlan) error
	// Adopt tags an existing VM with o, refused (MAP_DUPLICATE_KEY) when
	// another owner tagged it first.
	Adopt(ctx context.Context, vm *xenapi.VM, o Owner) error
	// Provision creates a claimed VM's disks and makes it a VM; a provision
	// that failed half-way is started over. It ends o's install.
	Provision(ctx context.Context, vm *xenapi.VM, o Owner) error
	// Configure sets the VM's name, description, other_config and affinity
	// to cfg where they differ, and reports whether it changed anything.
	Configure(ctx context.Context, vm *xenapi.VM, o Owner, cfg Config) (bool, error)
	// Resize sets a halted VM's VCPUs and memory (0 leaves either).
	Resize(ctx context.Context, vm *xenapi.VM, vcpus, memory int64) error
	// BeginPower starts a power operation as a task and returns the task's
	// ref; FinishTask reads its outcome once it ended.
	BeginPower(ctx context.Context, vm *xenapi.VM, op PowerOp) (string, error)
	// FinishTask destroys an ended task and returns its outcome.
	FinishTask(ctx context.Context, task *xenapi.Task) error
	// CancelTask asks xapi to cancel a task; a task that already ended is
	// not an error.
	CancelTask(ctx context.Context, ref string) error
	// Task reads a task from xapi, for when the event stream has not told.
	Task(ctx context.Context, ref string) (*xenapi.Task, error)
	// PowerOff powers a VM off at once; a VM already off is not an error.
	PowerOff(ctx context.Context, vm *xenapi.VM) error
	// Destroy destroys a halted VM with its disks.
	Destroy(ctx context.Context, vm *xenapi.VM) error
	// Settled tells whether the cache shows every device write made for o
	// (within a bound): until then o's interfaces and disks are not looked
	// at again.
	Settled(o Owner) bool
	// CreateNIC creates an interface on a VM (unplugged).
	CreateNIC(ctx context.Context, vm *xenapi.VM, o Owner, nic NIC) error
	// MoveNIC moves an interface to another network, live if it is plugged.
	MoveNIC(ctx context.Context, vif *xenapi.VIF, o Owner, network *xenapi.Network) error
	// RemoveNIC destroys an unplugged interface.
	RemoveNIC(ctx context.Context, vif *xenapi.VIF, o Owner) error
	// Plug plugs (or unplugs) an interface (*xenapi.VIF) or a disk
	// (*xenapi.VBD) of a running VM.
	Plug(ctx context.Context, device any, o Owner, plugged bool) error
	// CreateDisk creates an empty disk tagged for o.
	CreateDisk(ctx context.Context, vm *xenapi.VM, o Owner, d NewDisk) error
	// AttachDisk attaches a disk to a VM at device ("" for the lowest free).
	AttachDisk(ctx context.Context, vm *xenapi.VM, o Owner, vdi *xenapi.VDI, device string) error
	// DetachDisk removes an unplugged disk's VBD; the disk stays.
	DetachDisk(ctx context.Context, vbd *xenapi.VBD, o Owner) error
	// DropDisk destroys a disk no VM uses, or untags it if it is retained.
	DropDisk(ctx context.Context, vdi *xenapi.VDI, o Owner) error
	// TagDisk tags a disk (root, which provision created) for o with its
	// name and policy.
	TagDisk(ctx context.Context, vdi *xenapi.VDI, o Owner, name, policy string) error
	// CreateConfigDrive creates o's empty config drive on sr.
	CreateConfigDrive(ctx context.Context, vm *xenapi.VM, o Owner, sr *xenapi.SR, size int64) error
	// WriteConfigDrive writes a config drive's image and tags it with its
	// hash and instance-id.
	WriteConfigDrive(ctx context.Context, vdi *xenapi.VDI, o Owner, image []byte, hash, instanceID string) error
	// GrowDisk grows a disk, online when it is attached to a running VM.
	GrowDisk(ctx context.Context, vdi *xenapi.VDI, o Owner, size int64, online bool) error
	// Release removes the operator's tags from a VM.
	Release(ctx context.Context, vm *xenapi.VM) error
	// Exists asks xapi whether a VM UUID exists, for when the cache does
	// not show it: connection and authentication failures are errors, never
	// "no".
	Exists(ctx context.Context, uuid string) (bool, error)

	// SetHostEnabled enables or disables a host.
	SetHostEnabled(ctx context.Context, host *xenapi.Host, enabled bool) error
	// Evacuate migrates every VM off a host and waits for it.
	Evacuate(ctx context.Context, host *xenapi.Host) error
	// HostMemory reads a host's total memory.
	HostMemory(ctx context.Context, host *xenapi.Host) (int64, error)
	// BeginEvacuate starts migrating every VM off a host, as a task.
	BeginEvacuate(ctx context.Context, host *xenapi.Host) (string, error)

	// TakeSnapshot snapshots a VM for o (a XenVMSnapshot) and returns the
	// snapshot's ref; ClaimSnapshot then tags and names it.
	TakeSnapshot(ctx context.Context, vm *xenapi.VM, o Owner, req SnapshotRequest) (string, error)
	// ClaimSnapshot tags a snapshot for o and gives it its name.
	ClaimSnapshot(ctx context.Context, snap *xenapi.VM, o Owner, name, description string) error
	// DestroySnapshot destroys a snapshot with its disks.
	DestroySnapshot(ctx context.Context, snap *xenapi.VM) error
	// ReleaseSnapshot removes o's tags from a snapshot.
	ReleaseSnapshot(ctx context.Context, snap *xenapi.VM) error
	// BeginRevert reverts a snapshot's VM to it, as a task.
	BeginRevert(ctx context.Context, snap *xenapi.VM) (string, error)
	// CanBootOn tells why a VM could not run on a host (nil: it could).
	CanBootOn(ctx context.Context, vm *xenapi.VM, host *xenapi.Host) error
	// BeginMigrate live-migrates a running VM to a host, as a task.
	BeginMigrate(ctx context.Context, vm *xenapi.VM, host *xenapi.Host) (string, error)
}

// XenAPI is the Service over the project's XenAPI client.
type XenAPI struct {
	client *xenapi.Client
	cache  *cache.Cache

	mu sync.Mutex
	// doubts holds the creating calls whose answer was lost (see doubt).
	doubts      map[doubtKey]doubtEntry
	doubtsSwept time.Time
	// installing holds the owners this process cloned a VM for and has not
	// provisioned yet, with when; waiting is the line of owners CanInstall
	// turned away, first come first served, with when each last asked.
	installing map[string]time.Time
	waiting    *line

	expect expectations
}

const (
	// installExpiry bounds how long an install counts against CanInstall
	// without news (its owner was deleted, or waits in a backoff).
	installExpiry = 5 * time.Minute
	// waiterExpiry drops from the line an owner that stopped asking (it
	// was deleted); owners in line ask again at least every 30 s.
	waiterExpiry = time.Minute
)

var _ Service = (*XenAPI)(nil)

// New returns the service of a pool: calls through client, writes told to c.
func New(client *xenapi.Client, c *cache.Cache) *XenAPI {
	return &XenAPI{client: client, cache: c, doubts: map[doubtKey]doubtEntry{}, installing: map[string]time.Time{}, waiting: newLine()}
}

// CanInstall implements Service. An install spans several reconciles
// (clone, then claim, provision and start once the clone's event came): new
// ones are admitted while fewer installs are under way than the pool runs
// operations at once, plus a short line, so that VMs already on their way
// finish first and the workers waiting for operation slots stay few. Owners
// turned away wait in line and are woken, in order, when room frees up.
func (x *XenAPI) CanInstall(o Owner) bool {
	saturated := x.client.Saturated()
	x.mu.Lock()
	defer x.mu.Unlock()
	now := time.Now()
	for uid, at := range x.installing {
		if now.Sub(at) > installExpiry {
			delete(x.installing, uid)
		}
	}
	free := x.installRoom()
	head := x.waiting.head(free, now)
	me := x.waiting.find(o.UID)
	if !saturated && free > 0 && (me == nil && len(head) < free || me != nil && slices.Contains(head, me)) {
		x.waiting.leave(o.UID)
		return true
	}
	x.waiting.join(o, now)
	return false
}

// installRoom is how many more installs may start: as many as the pool
// runs operations at once, plus a short line (twice as many measured no
// faster at N=1000, and ties up more workers). Called with x.mu held.
func (x *XenAPI) installRoom() int {
	return x.client.Capacity() + xenapi.LowQueue - len(x.installing)
}

// startInstall counts an install for CanInstall.
func (x *XenAPI) startInstall(o Owner) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.installing[o.UID] = time.Now()
}

// installed ends an install for CanInstall (done, failed or abandoned).
func (x *XenAPI) installed(o Owner) {
	x.mu.Lock()
	delete(x.installing, o.UID)
	x.mu.Unlock()
	x.wakeWaiting()
}

// wakeWaiting wakes the owners at the head of the line that the room now
// free can take.
func (x *XenAPI) wakeWaiting() {
	x.mu.Lock()
	head := x.waiting.head(x.installRoom(), time.Now())
	wake := make([]string, 0, len(head))
	for _, w := range head {
		wake = append(wake, w.owner.Key())
	}
	x.mu.Unlock()
	for _, o := range wake {
		x.cache.Wake(o)
	}
}

// Clone implements Service.
func (x *XenAPI) Clone(ctx context.Context, template *xenapi.VM, o Owner) (string, error) {
	name := o.InstallName()
	if _, ok := x.doubted(o, doubtClone); ok {
		vms, err := x.client.VMsByName(ctx, name)
		if err != nil {
			return "", err
		}
		x.resolved(o, doubtClone)
		if len(vms) > 0 {
			x.cache.ExpectVM(name, vms[0].Ref, o.Key())
			x.startInstall(o)
			return vms[0].Ref, nil
		}
	}
	ref, err := x.client.CloneVM(ctx, template.Ref, name)
	defer x.wakeWaiting() // the clone left the line for operation slots
	if err != nil {
		x.doubt(o, doubtClone, name, err)
		return "", err
	}
	x.cache.ExpectVM(name, ref, o.Key())
	x.startInstall(o)
	return ref, nil
}

// doubtKey names a creating call of an owner: what it creates.
type doubtKey struct{ uid, what string }

type doubtEntry struct {
	seek string
	at   time.Time
}

const (
	doubtClone    = "clone"
	doubtSnapshot = "snapshot"
)

// doubtExpiry bounds how long a doubt is kept: when the lost call did
// create, the cache shows it long before and the owner never asks again
// (nor does a deleted owner).
const doubtExpiry = 5 * time.Minute

// doubt records, when err says the answer of o's call creating what was
// lost (the connection broke, the context ended, or xapi collected the
// task before its result was read, after the request may have reached
// xapi, which runs a call to its end whoever waits for it), that the call
// may have happened; seek is what the next attempt searches xapi for
// before creating again. The cache cannot answer that: a retry can come
// before the event of what the lost call created.
func (x *XenAPI) doubt(o Owner, what, seek string, err error) {
	if !xenapi.IsConnectionError(err) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, xenapi.ErrTaskCollected) {
		return
	}
	now := time.Now()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.doubts[doubtKey{o.UID, what}] = doubtEntry{seek: seek, at: now}
	if now.Sub(x.doubtsSwept) > doubtExpiry {
		x.doubtsSwept = now
		for k, d := range x.doubts {
			if now.Sub(d.at) > doubtExpiry {
				delete(x.doubts, k)
			}
		}
	}
}

// doubted returns what to search for when o's last call creating what may
// have happened.
func (x *XenAPI) doubted(o Owner, what string) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	d, ok := x.doubts[doubtKey{o.UID, what}]
	if ok && time.Since(d.at) > doubtExpiry {
		delete(x.doubts, doubtKey{o.UID, what})
		return "", false
	}
	return d.seek, ok
}

// resolved forgets a doubt once xapi was searched.
func (x *XenAPI) resolved(o Owner, what string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.doubts, doubtKey{o.UID, what})
}

// Claim implements Service.
func (x *XenAPI) Claim(ctx context.Context, vm *xenapi.VM, o Owner, entries map[string]string, plan DiskPlan) error {
	want := DesiredOtherConfig(vm.OtherConfig, entries, o, plan)
	if err := x.client.SetVMOtherConfig(ctx, vm.Ref, want); err != nil {
		x.installed(o) // it waits in a backoff: not against CanInstall
		return err
	}
	x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.OtherConfig = want }, cache.FieldOtherConfig)
	return nil
}

// Adopt implements Service: the UID tag goes first, with
// add_to_other_config, which xapi refuses for a key that is there, so that
// of two adopters only one wins; the owner tag follows.
func (x *XenAPI) Adopt(ctx context.Context, vm *xenapi.VM, o Owner) error {
	if err := x.client.AddToVMOtherConfig(ctx, vm.Ref, TagUID, o.UID); err != nil {
		return err
	}
	if err := x.client.AddToVMOtherConfig(ctx, vm.Ref, TagOwner, o.Key()); err != nil && xenapi.CodeOf(err) != xenapi.CodeMapDuplicateKey {
		return err
	}
	tagged := maps.Clone(vm.OtherConfig)
	tagged[TagUID], tagged[TagOwner] = o.UID, o.Key()
	x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.OtherConfig = tagged }, cache.FieldOtherConfig)
	return nil
}

// ErrInstalled says a VM the caller would provision is installed already:
// its view lagged the provision. ErrBusy says an operation (a provision)
// runs on it: its end wakes the owner.
var (
	ErrInstalled = errors.New("the VM is installed already")
	ErrBusy      = errors.New("an operation runs on the VM")
)

// Provision implements Service.
func (x *XenAPI) Provision(ctx context.Context, vm *xenapi.VM, o Owner) error {
	defer x.installed(o) // done, or waiting in a backoff
	if !vm.IsTemplate {
		// A provision that failed after xapi un-templated the VM (xapi
		// un-templates first, then creates the disks), or one that ended
		// while the caller's view missed it (seen at N=10000, before the
		// cache's reads became atomic with its events: a reconcile right
		// after the provision saw the VM un-templated with its disks key):
		// xapi says which before anything is undone.
		now, err := x.client.VM(ctx, vm.Ref)
		if err != nil {
			return err
		}
		switch {
		case Installed(now, o):
			x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) {
				v.IsTemplate, v.OtherConfig, v.CurrentOperations = false, now.OtherConfig, now.CurrentOperations
			}, cache.FieldIsTemplate, cache.FieldOtherConfig, cache.FieldCurrentOperations)
			return ErrInstalled
		case len(now.CurrentOperations) > 0:
			return ErrBusy
		case !now.IsTemplate:
			if err := x.client.SetVMIsTemplate(ctx, vm.Ref, true); err != nil {
				return err
			}
		}
	}
	if err := x.client.ProvisionVM(ctx, vm.Ref); err != nil {
		return err
	}
	// The provision is over too: the next steps need not wait for its
	// event to see the VM without it.
	x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) {
		v.IsTemplate = false
		delete(v.OtherConfig, "disks")
		maps.DeleteFunc(v.CurrentOperations, func(_, op string) bool { return op == "provision" })
	}, cache.FieldIsTemplate, cache.FieldOtherConfig, cache.FieldCurrentOperations)
	return nil
}

// Configure implements Service.
func (x *XenAPI) Configure(ctx context.Context, vm *xenapi.VM, o Owner, cfg Config) (bool, error) {
	changed := false
	if cfg.NameLabel != "" && vm.NameLabel != cfg.NameLabel {
		if err := x.client.SetVMNameLabel(ctx, vm.Ref, cfg.NameLabel); err != nil {
			return changed, err
		}
		x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.NameLabel = cfg.NameLabel }, cache.FieldNameLabel)
		changed = true
	}
	if cfg.Description != "" && vm.NameDescription != cfg.Description {
		if err := x.client.SetVMNameDescription(ctx, vm.Ref, cfg.Description); err != nil {
			return changed, err
		}
		x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.NameDescription = cfg.Description }, cache.FieldNameDescription)
		changed = true
	}
	if want := DesiredOtherConfig(vm.OtherConfig, cfg.OtherConfig, o, DiskPlan{}); !maps.Equal(want, vm.OtherConfig) {
		if err := x.client.SetVMOtherConfig(ctx, vm.Ref, want); err != nil {
			return changed, err
		}
		x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.OtherConfig = want }, cache.FieldOtherConfig)
		changed = true
	}
	want := vm.Affinity
	switch {
	case cfg.Affinity != nil:
		want = cfg.Affinity.Ref
	case cfg.ClearAffinity:
		want = ""
	}
	if want != vm.Affinity {
		if err := x.client.SetVMAffinity(ctx, vm.Ref, want); err != nil {
			return changed, err
		}
		x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.Affinity = want }, cache.FieldAffinity)
		changed = true
	}
	more, err := x.protectAndTag(ctx, vm, o, cfg)
	return changed || more, err
}

// protectAndTag keeps the VM's destroy block and tags as cfg says.
func (x *XenAPI) protectAndTag(ctx context.Context, vm *xenapi.VM, o Owner, cfg Config) (bool, error) {
	changed := false
	if _, blocked := vm.BlockedOperations["destroy"]; cfg.Protect != blocked && (cfg.Protect || blockedByUs(vm)) {
		var err error
		if cfg.Protect {
			err = x.client.BlockVMOperation(ctx, vm.Ref, "destroy", destroyBlock(o))
		} else {
			err = x.client.UnblockVMOperation(ctx, vm.Ref, "destroy")
		}
		if err != nil {
			return changed, err
		}
		blocked := maps.Clone(vm.BlockedOperations)
		if cfg.Protect {
			blocked["destroy"] = destroyBlock(o)
		} else {
			delete(blocked, "destroy")
		}
		x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.BlockedOperations = blocked }, cache.FieldBlockedOperations)
		changed = true
	}
	if cfg.Tags != nil && !slices.Equal(slices.Sorted(slices.Values(vm.Tags)), slices.Sorted(slices.Values(cfg.Tags))) {
		tags := slices.Sorted(slices.Values(cfg.Tags))
		if err := x.client.SetVMTags(ctx, vm.Ref, tags); err != nil {
			return changed, err
		}
		x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.Tags = tags }, cache.FieldTags)
		changed = true
	}
	if p := cfg.HARestartPriority; p != nil && *p != vm.HARestartPriority {
		if err := x.client.SetVMHARestartPriority(ctx, vm.Ref, *p); err != nil {
			return changed, err
		}
		x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.HARestartPriority = *p }, cache.FieldHARestartPriority)
		changed = true
	}
	return changed, nil
}

// Resize implements Service.
func (x *XenAPI) Resize(ctx context.Context, vm *xenapi.VM, vcpus, memory int64) error {
	if vcpus > 0 && (vm.VCPUsMax != vcpus || vm.VCPUsAtStartup != vcpus) {
		if err := x.setVCPUs(ctx, vm, vcpus); err != nil {
			return err
		}
		x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.VCPUsMax, v.VCPUsAtStartup = vcpus, vcpus }, cache.FieldVCPUs)
	}
	if memory > 0 && (vm.MemoryStaticMax != memory || vm.MemoryDynamicMax != memory || vm.MemoryDynamicMin != memory) {
		staticMin := min(vm.MemoryStaticMin, memory)
		if err := x.client.SetVMMemoryLimits(ctx, vm.Ref, staticMin, memory, memory, memory); err != nil {
			return err
		}
		x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) {
			v.MemoryStaticMin, v.MemoryStaticMax, v.MemoryDynamicMin, v.MemoryDynamicMax = staticMin, memory, memory, memory
		}, cache.FieldMemory)
	}
	return nil
}

// setVCPUs sets VCPUs_max and VCPUs_at_startup in the order xapi's
// constraint at_startup <= max allows.
func (x *XenAPI) setVCPUs(ctx context.Context, vm *xenapi.VM, n int64) error {
	if n >= vm.VCPUsMax {
		if n != vm.VCPUsMax {
			if err := x.client.SetVMVCPUsMax(ctx, vm.Ref, n); err != nil {
				return err
			}
		}
		if n != vm.VCPUsAtStartup {
			return x.client.SetVMVCPUsAtStartup(ctx, vm.Ref, n)
		}
		return nil
	}
	if n != vm.VCPUsAtStartup {
		if err := x.client.SetVMVCPUsAtStartup(ctx, vm.Ref, n); err != nil {
			return err
		}
	}
	return x.client.SetVMVCPUsMax(ctx, vm.Ref, n)
}

// BeginPower implements Service.
func (x *XenAPI) BeginPower(ctx context.Context, vm *xenapi.VM, op PowerOp) (string, error) {
	switch op {
	case OpStart, OpStartPaused:
		return x.client.Begin(ctx, "VM.start", vm.Ref, op == OpStartPaused, false)
	case OpResume, OpResumePaused:
		return x.client.Begin(ctx, "VM.resume", vm.Ref, op == OpResumePaused, false)
	case OpPause, OpUnpause, OpSuspend, OpCleanShutdown, OpHardShutdown:
		return x.client.Begin(ctx, "VM."+string(op), vm.Ref)
	}
	return "", fmt.Errorf("vmservice: unknown power operation %q", op)
}

// FinishTask implements Service.
func (x *XenAPI) FinishTask(ctx context.Context, task *xenapi.Task) error {
	return x.client.Finish(ctx, task)
}

// CancelTask implements Service.
func (x *XenAPI) CancelTask(ctx context.Context, ref string) error {
	err := x.client.CancelTask(ctx, ref)
	if xenapi.IsHandleInvalid(err) || xenapi.IsOperationNotAllowed(err) {
		return nil // gone, or no longer cancellable: it ended
	}
	return err
}

// Task implements Service.
func (x *XenAPI) Task(ctx context.Context, ref string) (*xenapi.Task, error) {
	return x.client.Task(ctx, ref)
}

// PowerOff implements Service.
func (x *XenAPI) PowerOff(ctx context.Context, vm *xenapi.VM) error {
	if err := x.client.HardShutdownVM(ctx, vm.Ref); err != nil && !xenapi.IsBadPowerState(err) {
		return err
	}
	return nil
}

// Destroy implements Service: its snapshots first, then the VM, each with
// its disks. The disks go before their VM: a crash in between leaves a
// tagged VM to finish with, never a disk nobody knows of. They are read
// from xapi, not the cache: a disk the cache has not shown yet must not be
// left behind. A disk another VM also uses, or one whose policy is Retain,
// stays (a retained one without the operator's tags).
func (x *XenAPI) Destroy(ctx context.Context, vm *xenapi.VM) error {
	rec, err := x.client.VM(ctx, vm.Ref)
	if xenapi.IsHandleInvalid(err) {
		return nil // destroyed already
	}
	if err != nil {
		return err
	}
	for _, snap := range rec.Snapshots {
		s, err := x.client.VM(ctx, snap)
		if xenapi.IsHandleInvalid(err) {
			continue
		}
		if err != nil {
			return err
		}
		if err := x.destroyWithDisks(ctx, s); err != nil {
			return err
		}
	}
	return x.destroyWithDisks(ctx, rec)
}

func (x *XenAPI) destroyWithDisks(ctx context.Context, vm *xenapi.VM) error {
	for _, vbdRef := range vm.VBDs {
		vbd, err := x.client.VBD(ctx, vbdRef)
		if xenapi.IsHandleInvalid(err) {
			continue
		}
		if err != nil {
			return err
		}
		if vbd.Type != "Disk" || vbd.VDI == "" || vbd.Empty {
			continue
		}
		if err := x.dropVMDisk(ctx, vm, vbd.VDI); err != nil {
			return err
		}
	}
	if blockedByUs(vm) {
		// The operator's own protection: lifted for the deletion it guards.
		if err := x.client.UnblockVMOperation(ctx, vm.Ref, "destroy"); err != nil && !xenapi.IsHandleInvalid(err) {
			return err
		}
	}
	if err := x.client.DestroyVM(ctx, vm.Ref); err != nil && !xenapi.IsHandleInvalid(err) {
		return err
	}
	return nil
}

// dropVMDisk destroys a disk of a VM being destroyed, unless another VM
// uses it too or its policy is Retain.
func (x *XenAPI) dropVMDisk(ctx context.Context, vm *xenapi.VM, ref string) error {
	vdi, err := x.client.VDI(ctx, ref)
	if xenapi.IsHandleInvalid(err) {
		return nil
	}
	if err != nil {
		return err
	}
	shared := false
	for _, other := range vdi.VBDs {
		if slices.Contains(vm.VBDs, other) {
			continue
		}
		if _, err := x.client.VBD(ctx, other); err == nil {
			shared = true // another VM uses it: it stays
			break
		} else if !xenapi.IsHandleInvalid(err) {
			return err
		}
	}
	// A snapshot's disk carries the policy of the disk it copies, but it
	// is the snapshot's own: it goes with it.
	if shared || vdi.OtherConfig[TagDeletionPolicy] == PolicyRetain && !vm.IsSnapshot {
		if vdi.OtherConfig[TagUID] == "" {
			return nil
		}
		err = x.client.SetVDIOtherConfig(ctx, vdi.Ref, untaggedDisk(vdi.OtherConfig))
	} else {
		err = x.client.DestroyVDI(ctx, vdi.Ref)
	}
	if err != nil && !xenapi.IsHandleInvalid(err) {
		return err
	}
	return nil
}

// Release implements Service: the VM's snapshots lose the tags they
// copied from it, and their own, too (a revert of a retained VM to one of
// them must not tag it again).
func (x *XenAPI) Release(ctx context.Context, vm *xenapi.VM) error {
	for _, ref := range vm.Snapshots {
		snap, ok := x.cache.VM(ref)
		if !ok {
			continue
		}
		want := Untagged(snap.OtherConfig)
		delete(want, TagSnapshotUID)
		delete(want, TagSnapshotOwner)
		if maps.Equal(want, snap.OtherConfig) {
			continue
		}
		if err := x.client.SetVMOtherConfig(ctx, ref, want); err != nil && !xenapi.IsHandleInvalid(err) {
			return err
		}
	}
	want := Untagged(vm.OtherConfig)
	if err := x.client.SetVMOtherConfig(ctx, vm.Ref, want); err != nil && !xenapi.IsHandleInvalid(err) {
		return err
	}
	x.cache.AssumeVM(vm.Ref, func(v *xenapi.VM) { v.OtherConfig = want }, cache.FieldOtherConfig)
	return nil
}

// Exists implements Service.
func (x *XenAPI) Exists(ctx context.Context, uuid string) (bool, error) {
	_, err := x.client.VMByUUID(ctx, uuid)
	switch {
	case xenapi.IsUUIDInvalid(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// SetHostEnabled implements Service.
func (x *XenAPI) SetHostEnabled(ctx context.Context, host *xenapi.Host, enabled bool) error {
	if enabled {
		return x.client.EnableHost(ctx, host.Ref)
	}
	return x.client.DisableHost(ctx, host.Ref)
}

// Evacuate implements Service.
func (x *XenAPI) Evacuate(ctx context.Context, host *xenapi.Host) error {
	return x.client.EvacuateHost(ctx, host.Ref)
}

// HostMemory implements Service.
func (x *XenAPI) HostMemory(ctx context.Context, host *xenapi.Host) (int64, error) {
	if host.Metrics == "" {
		return 0, fmt.Errorf("vmservice: host %s has no metrics", host.NameLabel)
	}
	m, err := x.client.HostMetrics(ctx, host.Metrics)
	if err != nil {
		return 0, err
	}
	return m.MemoryTotal, nil
}

// Canonical picks, among an owner's VMs (Owned), the one to keep: the one
// with the owner's recorded UUID, else the furthest installed (provisioned
// before claimed before a bare clone, a clone the cache shows before one it
// does not), else the first by ref. The others are duplicates left by an
// install that raced a crash.
func Canonical(vms []*xenapi.VM, o Owner, uuid string) (*xenapi.VM, []*xenapi.VM) {
	rank := func(vm *xenapi.VM) int {
		switch {
		case uuid != "" && vm.UUID == uuid:
			return 4
		case Installed(vm, o):
			return 3
		case vm.OtherConfig[TagUID] == o.UID:
			return 2
		case !Pending(vm):
			return 1
		}
		return 0
	}
	var keep *xenapi.VM
	for _, vm := range vms {
		if keep == nil || rank(vm) > rank(keep) {
			keep = vm
		}
	}
	var extras []*xenapi.VM
	for _, vm := range vms {
		if vm != keep && !Pending(vm) {
			extras = append(extras, vm)
		}
	}
	return keep, extras
}
