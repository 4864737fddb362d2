package xenapi

import (
	"context"
	"fmt"
)

// PoolRecord returns the pool (a standalone host is a pool of one).
func (c *Client) PoolRecord(ctx context.Context) (*PoolRecord, error) {
	all, err := do[map[string]poolWire](ctx, c, "pool.get_all_records")
	if err != nil {
		return nil, err
	}
	for ref, w := range all {
		return w.record(ref), nil
	}
	return nil, fmt.Errorf("xenapi: %s has no pool", c.rpc.endpoint)
}

// SetPoolDefaultSR sets the SR new disks go to by default ("" for none).
func (c *Client) SetPoolDefaultSR(ctx context.Context, pool, sr string) error {
	if sr == "" {
		sr = NullRef
	}
	return c.void(ctx, "pool.set_default_SR", pool, sr)
}

// Hosts returns every host of the pool.
func (c *Client) Hosts(ctx context.Context) ([]*Host, error) {
	all, err := do[map[string]hostWire](ctx, c, "host.get_all_records")
	if err != nil {
		return nil, err
	}
	out := make([]*Host, 0, len(all))
	for ref, w := range all {
		out = append(out, w.record(ref))
	}
	return out, nil
}

// Host returns one host.
func (c *Client) Host(ctx context.Context, ref string) (*Host, error) {
	w, err := do[hostWire](ctx, c, "host.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// HostMetrics returns a host's memory facts.
func (c *Client) HostMetrics(ctx context.Context, ref string) (*HostMetrics, error) {
	w, err := do[hostMetricsWire](ctx, c, "host_metrics.get_record", ref)
	if err != nil {
		return nil, err
	}
	return &HostMetrics{Ref: ref, MemoryTotal: atoi(w.MemoryTotal), Live: w.Live}, nil
}

func (c *Client) void(ctx context.Context, method string, args ...any) error {
	_, err := mutate[string](ctx, c, method, args...)
	return err
}

// EnableHost enables a host.
func (c *Client) EnableHost(ctx context.Context, ref string) error {
	return c.void(ctx, "host.enable", ref)
}

// DisableHost disables a host, so that no VM starts on it.
func (c *Client) DisableHost(ctx context.Context, ref string) error {
	return c.void(ctx, "host.disable", ref)
}

// EvacuateHost migrates every VM off a host, as an Async task: evacuations
// take long.
func (c *Client) EvacuateHost(ctx context.Context, ref string) error {
	_, err := Async[string](ctx, c, "host.evacuate", ref)
	return err
}

// VM returns one VM.
func (c *Client) VM(ctx context.Context, ref string) (*VM, error) {
	w, err := do[vmWire](ctx, c, "VM.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// VMByUUID returns the VM with a UUID; IsNotFound(err) when there is none.
func (c *Client) VMByUUID(ctx context.Context, uuid string) (*VM, error) {
	ref, err := do[string](ctx, c, "VM.get_by_uuid", uuid)
	if err != nil {
		return nil, err
	}
	return c.VM(ctx, ref)
}

// VMVBDs returns the refs of a VM's VBDs, as xapi has them now.
func (c *Client) VMVBDs(ctx context.Context, ref string) ([]string, error) {
	return do[[]string](ctx, c, "VM.get_VBDs", ref)
}

// VMsByName returns the VMs (templates included) with a name_label.
func (c *Client) VMsByName(ctx context.Context, name string) ([]*VM, error) {
	refs, err := do[[]string](ctx, c, "VM.get_by_name_label", name)
	if err != nil {
		return nil, err
	}
	out := make([]*VM, 0, len(refs))
	for _, ref := range refs {
		vm, err := c.VM(ctx, ref)
		if IsHandleInvalid(err) {
			continue // destroyed in between
		}
		if err != nil {
			return nil, err
		}
		out = append(out, vm)
	}
	return out, nil
}

// VMs returns every VM, template and control domain of the pool.
func (c *Client) VMs(ctx context.Context) ([]*VM, error) {
	all, err := do[map[string]vmWire](ctx, c, "VM.get_all_records")
	if err != nil {
		return nil, err
	}
	out := make([]*VM, 0, len(all))
	for ref, w := range all {
		out = append(out, w.record(ref))
	}
	return out, nil
}

// CloneVM clones a VM or template; a clone of a template is a template.
// Clones bring new VMs in, so they wait behind other operations.
func (c *Client) CloneVM(ctx context.Context, ref, name string) (string, error) {
	return mutateAt[string](ctx, c, true, "VM.clone", ref, name)
}

// CopyVM copies a VM or template with full disk copies into an SR, as an
// Async task: copies take long.
func (c *Client) CopyVM(ctx context.Context, ref, name, srRef string) (string, error) {
	return Async[string](ctx, c, "VM.copy", ref, name, srRef)
}

// ProvisionVM turns a template clone into a VM and creates its disks.
func (c *Client) ProvisionVM(ctx context.Context, ref string) error {
	return c.void(ctx, "VM.provision", ref)
}

// SetVMIsTemplate turns a halted VM into a template or back.
func (c *Client) SetVMIsTemplate(ctx context.Context, ref string, template bool) error {
	return c.void(ctx, "VM.set_is_a_template", ref, template)
}

// StartVM starts a halted VM, paused or not.
func (c *Client) StartVM(ctx context.Context, ref string, paused bool) error {
	return c.void(ctx, "VM.start", ref, paused, false)
}

// PauseVM pauses a running VM.
func (c *Client) PauseVM(ctx context.Context, ref string) error {
	return c.void(ctx, "VM.pause", ref)
}

// UnpauseVM resumes a paused VM.
func (c *Client) UnpauseVM(ctx context.Context, ref string) error {
	return c.void(ctx, "VM.unpause", ref)
}

// SuspendVM suspends a running VM to disk.
func (c *Client) SuspendVM(ctx context.Context, ref string) error {
	return c.void(ctx, "VM.suspend", ref)
}

// ResumeVM resumes a suspended VM, paused or not.
func (c *Client) ResumeVM(ctx context.Context, ref string, paused bool) error {
	return c.void(ctx, "VM.resume", ref, paused, false)
}

// CleanShutdownVM asks the guest to shut down.
func (c *Client) CleanShutdownVM(ctx context.Context, ref string) error {
	return c.void(ctx, "VM.clean_shutdown", ref)
}

// HardShutdownVM powers the VM off.
func (c *Client) HardShutdownVM(ctx context.Context, ref string) error {
	return c.void(ctx, "VM.hard_shutdown", ref)
}

// CleanRebootVM asks the guest to reboot.
func (c *Client) CleanRebootVM(ctx context.Context, ref string) error {
	return c.void(ctx, "VM.clean_reboot", ref)
}

// HardRebootVM resets the VM.
func (c *Client) HardRebootVM(ctx context.Context, ref string) error {
	return c.void(ctx, "VM.hard_reboot", ref)
}

// DestroyVM destroys a halted or suspended VM; its VDIs stay.
func (c *Client) DestroyVM(ctx context.Context, ref string) error {
	return c.void(ctx, "VM.destroy", ref)
}

// SetVMNameLabel renames a VM.
func (c *Client) SetVMNameLabel(ctx context.Context, ref, name string) error {
	return c.void(ctx, "VM.set_name_label", ref, name)
}

// SetVMNameDescription sets a VM's description.
func (c *Client) SetVMNameDescription(ctx context.Context, ref, description string) error {
	return c.void(ctx, "VM.set_name_description", ref, description)
}

// SetVMOtherConfig replaces a VM's other_config.
func (c *Client) SetVMOtherConfig(ctx context.Context, ref string, config map[string]string) error {
	return c.void(ctx, "VM.set_other_config", ref, config)
}

// AddToVMOtherConfig adds a key; MAP_DUPLICATE_KEY if it is there.
func (c *Client) AddToVMOtherConfig(ctx context.Context, ref, key, value string) error {
	return c.void(ctx, "VM.add_to_other_config", ref, key, value)
}

// RemoveFromVMOtherConfig removes a key (no error if it is missing).
func (c *Client) RemoveFromVMOtherConfig(ctx context.Context, ref, key string) error {
	return c.void(ctx, "VM.remove_from_other_config", ref, key)
}

// BlockVMOperation adds an operation to a VM's blocked_operations, with
// the reason xapi gives (OPERATION_BLOCKED) to whoever tries it.
func (c *Client) BlockVMOperation(ctx context.Context, ref, op, reason string) error {
	return c.void(ctx, "VM.add_to_blocked_operations", ref, op, reason)
}

// UnblockVMOperation removes an operation from a VM's blocked_operations.
func (c *Client) UnblockVMOperation(ctx context.Context, ref, op string) error {
	return c.void(ctx, "VM.remove_from_blocked_operations", ref, op)
}

// SetVMTags replaces a VM's tags.
func (c *Client) SetVMTags(ctx context.Context, ref string, tags []string) error {
	if tags == nil {
		tags = []string{}
	}
	return c.void(ctx, "VM.set_tags", ref, tags)
}

// SetVMMemoryLimits sets the four memory limits (the VM must be halted).
func (c *Client) SetVMMemoryLimits(ctx context.Context, ref string, staticMin, staticMax, dynamicMin, dynamicMax int64) error {
	return c.void(ctx, "VM.set_memory_limits", ref, staticMin, staticMax, dynamicMin, dynamicMax)
}

// SetVMVCPUsMax sets VCPUs_max (halted VMs only; VCPUs_at_startup must not
// exceed it).
func (c *Client) SetVMVCPUsMax(ctx context.Context, ref string, n int64) error {
	return c.void(ctx, "VM.set_VCPUs_max", ref, n)
}

// SetVMVCPUsAtStartup sets VCPUs_at_startup (at most VCPUs_max).
func (c *Client) SetVMVCPUsAtStartup(ctx context.Context, ref string, n int64) error {
	return c.void(ctx, "VM.set_VCPUs_at_startup", ref, n)
}

// SetVMAffinity sets the host a VM prefers to start on ("" for none).
func (c *Client) SetVMAffinity(ctx context.Context, ref, hostRef string) error {
	if hostRef == "" {
		hostRef = NullRef
	}
	return c.void(ctx, "VM.set_affinity", ref, hostRef)
}

// GuestMetrics returns what a VM's guest agent reports.
func (c *Client) GuestMetrics(ctx context.Context, ref string) (*GuestMetrics, error) {
	w, err := do[guestMetricsWire](ctx, c, "VM_guest_metrics.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// SR returns a storage repository.
func (c *Client) SR(ctx context.Context, ref string) (*SR, error) {
	w, err := do[srWire](ctx, c, "SR.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// SRs returns every SR of the pool.
func (c *Client) SRs(ctx context.Context) ([]*SR, error) {
	return all(ctx, c, "SR.get_all_records", (*srWire).record)
}

// PBD returns a host's connection to an SR.
func (c *Client) PBD(ctx context.Context, ref string) (*PBD, error) {
	w, err := do[pbdWire](ctx, c, "PBD.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// Networks returns every network of the pool.
func (c *Client) Networks(ctx context.Context) ([]*Network, error) {
	return all(ctx, c, "network.get_all_records", (*networkWire).record)
}

func all[W, R any](ctx context.Context, c *Client, method string, record func(*W, string) *R) ([]*R, error) {
	recs, err := do[map[string]W](ctx, c, method)
	if err != nil {
		return nil, err
	}
	out := make([]*R, 0, len(recs))
	for ref, w := range recs {
		out = append(out, record(&w, ref))
	}
	return out, nil
}

// VDI returns a virtual disk.
func (c *Client) VDI(ctx context.Context, ref string) (*VDI, error) {
	w, err := do[vdiWire](ctx, c, "VDI.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// VDIsByName returns the disks with a name_label.
func (c *Client) VDIsByName(ctx context.Context, name string) ([]*VDI, error) {
	refs, err := do[[]string](ctx, c, "VDI.get_by_name_label", name)
	if err != nil {
		return nil, err
	}
	out := make([]*VDI, 0, len(refs))
	for _, ref := range refs {
		vdi, err := c.VDI(ctx, ref)
		if err != nil && !IsHandleInvalid(err) {
			return nil, err
		}
		if err == nil {
			out = append(out, vdi)
		}
	}
	return out, nil
}

// VBD returns a virtual block device.
func (c *Client) VBD(ctx context.Context, ref string) (*VBD, error) {
	w, err := do[vbdWire](ctx, c, "VBD.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// VIF returns a virtual network interface.
func (c *Client) VIF(ctx context.Context, ref string) (*VIF, error) {
	w, err := do[vifWire](ctx, c, "VIF.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// Network returns a network.
func (c *Client) Network(ctx context.Context, ref string) (*Network, error) {
	w, err := do[networkWire](ctx, c, "network.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// VIFSpec is what VIF.create is given.
type VIFSpec struct {
	VM, Network, Device string
	// MAC is the interface's MAC; "" lets xapi generate one from the VM's
	// mac_seed.
	MAC string
}

// CreateVIF creates a network interface on a VM, unplugged, and returns its
// ref: the record Xen Orchestra and the SDK's install example give
// VIF.create.
func (c *Client) CreateVIF(ctx context.Context, spec VIFSpec) (string, error) {
	rec := map[string]any{
		"device": spec.Device, "network": spec.Network, "VM": spec.VM, "MAC": spec.MAC, "MTU": "1500",
		"other_config": map[string]string{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]string{},
		"locking_mode": "network_default", "ipv4_allowed": []string{}, "ipv6_allowed": []string{},
	}
	return mutate[string](ctx, c, "VIF.create", rec)
}

// DestroyVIF destroys an unplugged interface.
func (c *Client) DestroyVIF(ctx context.Context, ref string) error {
	return c.void(ctx, "VIF.destroy", ref)
}

// PlugVIF hot-plugs an interface into a running VM.
func (c *Client) PlugVIF(ctx context.Context, ref string) error {
	return c.void(ctx, "VIF.plug", ref)
}

// UnplugVIF hot-unplugs an interface from a running VM.
func (c *Client) UnplugVIF(ctx context.Context, ref string) error {
	return c.void(ctx, "VIF.unplug", ref)
}

// MoveVIF moves an interface to another network, live when it is plugged.
func (c *Client) MoveVIF(ctx context.Context, ref, network string) error {
	return c.void(ctx, "VIF.move", ref, network)
}

// VDISpec is what VDI.create is given.
type VDISpec struct {
	NameLabel, NameDescription, SR string
	VirtualSize                    int64
	OtherConfig                    map[string]string
}

// CreateVDI creates an empty user disk and returns its ref.
func (c *Client) CreateVDI(ctx context.Context, spec VDISpec) (string, error) {
	rec := map[string]any{
		"name_label": spec.NameLabel, "name_description": spec.NameDescription, "SR": spec.SR,
		"virtual_size": fmt.Sprint(spec.VirtualSize), "type": "user", "sharable": false, "read_only": false,
		"other_config": orEmpty(spec.OtherConfig), "xenstore_data": map[string]string{}, "sm_config": map[string]string{},
		"tags": []string{},
	}
	return mutate[string](ctx, c, "VDI.create", rec)
}

// DestroyVDI destroys a virtual disk.
func (c *Client) DestroyVDI(ctx context.Context, ref string) error {
	return c.void(ctx, "VDI.destroy", ref)
}

// ResizeVDI grows a disk no running VM has attached.
func (c *Client) ResizeVDI(ctx context.Context, ref string, size int64) error {
	return c.void(ctx, "VDI.resize", ref, fmt.Sprint(size))
}

// ResizeVDIOnline grows an attached disk, where the SR's driver can.
func (c *Client) ResizeVDIOnline(ctx context.Context, ref string, size int64) error {
	return c.void(ctx, "VDI.resize_online", ref, fmt.Sprint(size))
}

// SetVDIOtherConfig replaces a disk's other_config.
func (c *Client) SetVDIOtherConfig(ctx context.Context, ref string, config map[string]string) error {
	return c.void(ctx, "VDI.set_other_config", ref, config)
}

// VBDSpec is what VBD.create is given for a disk.
type VBDSpec struct {
	VM, VDI, Userdevice string
	Bootable            bool
}

// CreateVBD attaches a disk to a VM as a read-write, unpluggable disk
// device and returns the VBD's ref.
func (c *Client) CreateVBD(ctx context.Context, spec VBDSpec) (string, error) {
	rec := map[string]any{
		"VM": spec.VM, "VDI": spec.VDI, "userdevice": spec.Userdevice, "bootable": spec.Bootable, "mode": "RW",
		"type": "Disk", "empty": false, "unpluggable": true, "other_config": map[string]string{},
		"qos_algorithm_type": "", "qos_algorithm_params": map[string]string{},
	}
	return mutate[string](ctx, c, "VBD.create", rec)
}

// DestroyVBD destroys an unplugged VBD; its disk stays.
func (c *Client) DestroyVBD(ctx context.Context, ref string) error {
	return c.void(ctx, "VBD.destroy", ref)
}

// PlugVBD hot-plugs a disk into a running VM.
func (c *Client) PlugVBD(ctx context.Context, ref string) error {
	return c.void(ctx, "VBD.plug", ref)
}

// UnplugVBD hot-unplugs a disk from a running VM.
func (c *Client) UnplugVBD(ctx context.Context, ref string) error {
	return c.void(ctx, "VBD.unplug", ref)
}

// CancelTask asks xapi to cancel a task; the operation it runs fails with
// TASK_CANCELLED when it notices.
func (c *Client) CancelTask(ctx context.Context, ref string) error {
	_, err := do[string](ctx, c, "task.cancel", ref)
	return err
}

// Task returns an Async task.
func (c *Client) Task(ctx context.Context, ref string) (*Task, error) {
	w, err := do[taskWire](ctx, c, "task.get_record", ref)
	if err != nil {
		return nil, err
	}
	return w.record(ref), nil
}

// SnapshotVM snapshots a VM's disks (any power state) under name, as an
// Async task: snapshots of large disks take long.
func (c *Client) SnapshotVM(ctx context.Context, ref, name string) (string, error) {
	return Async[string](ctx, c, "VM.snapshot", ref, name)
}

// CheckpointVM snapshots a running VM's disks and memory under name, as
// an Async task.
func (c *Client) CheckpointVM(ctx context.Context, ref, name string) (string, error) {
	return Async[string](ctx, c, "VM.checkpoint", ref, name)
}

// AssertCanBootHere asks xapi whether a VM could run on a host: nil, or
// the reason it could not (VM_REQUIRES_SR, HOST_NOT_ENOUGH_FREE_MEMORY, ...).
func (c *Client) AssertCanBootHere(ctx context.Context, ref, host string) error {
	_, err := do[string](ctx, c, "VM.assert_can_boot_here", ref, host)
	return err
}

// SetVMHARestartPriority sets what HA does with a VM when its host fails
// ("restart", "best-effort" or "").
func (c *Client) SetVMHARestartPriority(ctx context.Context, ref, priority string) error {
	return c.void(ctx, "VM.set_ha_restart_priority", ref, priority)
}
