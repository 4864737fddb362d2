package xenapi

import (
	"slices"
	"strconv"
	"time"
)

// NullRef is xapi's null reference. Records in this package carry "" instead.
const NullRef = "OpaqueRef:NULL"

// PowerState is a VM power state as xapi spells it.
type PowerState string

// The VM power states.
const (
	PowerStateHalted    PowerState = "Halted"
	PowerStatePaused    PowerState = "Paused"
	PowerStateRunning   PowerState = "Running"
	PowerStateSuspended PowerState = "Suspended"
)

// The records below are what the operator reads of each class. xapi sends
// ints as untyped strings, which the decoder (decode.go), like kolo, only
// decodes into strings, so each class has a wire struct (what is decoded)
// and a record (what callers use), with null refs as "".

// VM is a virtual machine, template, snapshot or control domain.
type VM struct {
	Ref               string
	UUID              string
	NameLabel         string
	NameDescription   string
	PowerState        PowerState
	IsTemplate        bool
	IsDefaultTemplate bool
	IsSnapshot        bool
	IsControlDomain   bool
	ResidentOn        string
	Affinity          string
	Domid             int64
	MemoryStaticMin   int64
	MemoryStaticMax   int64
	MemoryDynamicMin  int64
	MemoryDynamicMax  int64
	VCPUsMax          int64
	VCPUsAtStartup    int64
	OtherConfig       map[string]string
	BlockedOperations map[string]string
	CurrentOperations map[string]string
	AllowedOperations []string
	GuestMetrics      string
	Metrics           string
	VBDs              []string
	VIFs              []string
	SuspendVDI        string
	Snapshots         []string
	DomainType        string
	Tags              []string
	SnapshotOf        string
	SnapshotTime      time.Time
	SnapshotInfo      map[string]string
	HARestartPriority string
}

type vmWire struct {
	UUID              string            `xmlrpc:"uuid"`
	NameLabel         string            `xmlrpc:"name_label"`
	NameDescription   string            `xmlrpc:"name_description"`
	PowerState        string            `xmlrpc:"power_state"`
	IsATemplate       bool              `xmlrpc:"is_a_template"`
	IsDefaultTemplate bool              `xmlrpc:"is_default_template"`
	IsASnapshot       bool              `xmlrpc:"is_a_snapshot"`
	IsControlDomain   bool              `xmlrpc:"is_control_domain"`
	ResidentOn        string            `xmlrpc:"resident_on"`
	Affinity          string            `xmlrpc:"affinity"`
	Domid             string            `xmlrpc:"domid"`
	MemoryStaticMin   string            `xmlrpc:"memory_static_min"`
	MemoryStaticMax   string            `xmlrpc:"memory_static_max"`
	MemoryDynamicMin  string            `xmlrpc:"memory_dynamic_min"`
	MemoryDynamicMax  string            `xmlrpc:"memory_dynamic_max"`
	VCPUsMax          string            `xmlrpc:"VCPUs_max"`
	VCPUsAtStartup    string            `xmlrpc:"VCPUs_at_startup"`
	OtherConfig       map[string]string `xmlrpc:"other_config"`
	BlockedOperations map[string]string `xmlrpc:"blocked_operations"`
	CurrentOperations map[string]string `xmlrpc:"current_operations"`
	AllowedOperations []string          `xmlrpc:"allowed_operations"`
	GuestMetrics      string            `xmlrpc:"guest_metrics"`
	Metrics           string            `xmlrpc:"metrics"`
	VBDs              []string          `xmlrpc:"VBDs"`
	VIFs              []string          `xmlrpc:"VIFs"`
	SuspendVDI        string            `xmlrpc:"suspend_VDI"`
	Snapshots         []string          `xmlrpc:"snapshots"`
	DomainType        string            `xmlrpc:"domain_type"`
	Tags              []string          `xmlrpc:"tags"`
	SnapshotOf        string            `xmlrpc:"snapshot_of"`
	SnapshotTime      time.Time         `xmlrpc:"snapshot_time"`
	SnapshotInfo      map[string]string `xmlrpc:"snapshot_info"`
	HARestartPriority string            `xmlrpc:"ha_restart_priority"`
}

func (w *vmWire) record(ref string) *VM {
	return &VM{
		Ref: ref, UUID: w.UUID, NameLabel: w.NameLabel, NameDescription: w.NameDescription,
		PowerState: PowerState(w.PowerState), IsTemplate: w.IsATemplate, IsDefaultTemplate: w.IsDefaultTemplate,
		IsSnapshot: w.IsASnapshot, IsControlDomain: w.IsControlDomain,
		ResidentOn: ref0(w.ResidentOn), Affinity: ref0(w.Affinity), Domid: atoi(w.Domid),
		MemoryStaticMin: atoi(w.MemoryStaticMin), MemoryStaticMax: atoi(w.MemoryStaticMax),
		MemoryDynamicMin: atoi(w.MemoryDynamicMin), MemoryDynamicMax: atoi(w.MemoryDynamicMax),
		VCPUsMax: atoi(w.VCPUsMax), VCPUsAtStartup: atoi(w.VCPUsAtStartup),
		OtherConfig: orEmpty(w.OtherConfig), BlockedOperations: orEmpty(w.BlockedOperations),
		CurrentOperations: orEmpty(w.CurrentOperations), AllowedOperations: w.AllowedOperations,
		GuestMetrics: ref0(w.GuestMetrics), Metrics: ref0(w.Metrics), VBDs: w.VBDs, VIFs: w.VIFs,
		SuspendVDI: ref0(w.SuspendVDI), Snapshots: w.Snapshots, DomainType: w.DomainType, Tags: w.Tags,
		SnapshotOf: ref0(w.SnapshotOf), SnapshotTime: w.SnapshotTime, SnapshotInfo: orEmpty(w.SnapshotInfo),
		HARestartPriority: w.HARestartPriority,
	}
}

// Host is a XenServer host.
type Host struct {
	Ref               string
	UUID              string
	NameLabel         string
	Hostname          string
	Address           string
	Enabled           bool
	APIVersionMajor   int64
	APIVersionMinor   int64
	SoftwareVersion   map[string]string
	CPUInfo           map[string]string
	MemoryOverhead    int64
	Metrics           string
	ControlDomain     string
	CurrentOperations map[string]string
}

type hostWire struct {
	UUID              string            `xmlrpc:"uuid"`
	NameLabel         string            `xmlrpc:"name_label"`
	Hostname          string            `xmlrpc:"hostname"`
	Address           string            `xmlrpc:"address"`
	Enabled           bool              `xmlrpc:"enabled"`
	APIVersionMajor   string            `xmlrpc:"API_version_major"`
	APIVersionMinor   string            `xmlrpc:"API_version_minor"`
	SoftwareVersion   map[string]string `xmlrpc:"software_version"`
	CPUInfo           map[string]string `xmlrpc:"cpu_info"`
	MemoryOverhead    string            `xmlrpc:"memory_overhead"`
	Metrics           string            `xmlrpc:"metrics"`
	ControlDomain     string            `xmlrpc:"control_domain"`
	CurrentOperations map[string]string `xmlrpc:"current_operations"`
}

func (w *hostWire) record(ref string) *Host {
	return &Host{
		Ref: ref, UUID: w.UUID, NameLabel: w.NameLabel, Hostname: w.Hostname, Address: w.Address,
		Enabled: w.Enabled, APIVersionMajor: atoi(w.APIVersionMajor), APIVersionMinor: atoi(w.APIVersionMinor),
		SoftwareVersion: orEmpty(w.SoftwareVersion), CPUInfo: orEmpty(w.CPUInfo),
		MemoryOverhead: atoi(w.MemoryOverhead), Metrics: ref0(w.Metrics),
		ControlDomain: ref0(w.ControlDomain), CurrentOperations: orEmpty(w.CurrentOperations),
	}
}

// HostMetrics are a host's memory facts.
type HostMetrics struct {
	Ref         string
	MemoryTotal int64
	Live        bool
}

type hostMetricsWire struct {
	MemoryTotal string `xmlrpc:"memory_total"`
	Live        bool   `xmlrpc:"live"`
}

// PoolRecord is the pool a host belongs to.
type PoolRecord struct {
	Ref         string
	UUID        string
	NameLabel   string
	Master      string
	DefaultSR   string
	OtherConfig map[string]string
}

type poolWire struct {
	UUID        string            `xmlrpc:"uuid"`
	NameLabel   string            `xmlrpc:"name_label"`
	Master      string            `xmlrpc:"master"`
	DefaultSR   string            `xmlrpc:"default_SR"`
	OtherConfig map[string]string `xmlrpc:"other_config"`
}

func (w *poolWire) record(ref string) *PoolRecord {
	return &PoolRecord{Ref: ref, UUID: w.UUID, NameLabel: w.NameLabel, Master: ref0(w.Master),
		DefaultSR: ref0(w.DefaultSR), OtherConfig: orEmpty(w.OtherConfig)}
}

// TaskStatus is the status of an Async task.
type TaskStatus string

// The task statuses.
const (
	TaskPending   TaskStatus = "pending"
	TaskSuccess   TaskStatus = "success"
	TaskFailure   TaskStatus = "failure"
	TaskCancelled TaskStatus = "cancelled"
)

// Task is an Async operation.
type Task struct {
	Ref       string
	UUID      string
	NameLabel string
	Status    TaskStatus
	Progress  float64
	Result    string
	ErrorInfo []string
	Created   time.Time
	Finished  time.Time
}

type taskWire struct {
	UUID      string    `xmlrpc:"uuid"`
	NameLabel string    `xmlrpc:"name_label"`
	Status    string    `xmlrpc:"status"`
	Progress  float64   `xmlrpc:"progress"`
	Result    string    `xmlrpc:"result"`
	ErrorInfo []string  `xmlrpc:"error_info"`
	Created   time.Time `xmlrpc:"created"`
	Finished  time.Time `xmlrpc:"finished"`
}

func (w *taskWire) record(ref string) *Task {
	return &Task{Ref: ref, UUID: w.UUID, NameLabel: w.NameLabel, Status: TaskStatus(w.Status),
		Progress: w.Progress, Result: w.Result, ErrorInfo: w.ErrorInfo, Created: w.Created, Finished: w.Finished}
}

// GuestMetrics is what a VM's guest agent reports.
type GuestMetrics struct {
	Ref               string
	UUID              string
	PVDriversDetected bool
	Networks          map[string]string
	OSVersion         map[string]string
	Other             map[string]string
	Live              bool
}

type guestMetricsWire struct {
	UUID              string            `xmlrpc:"uuid"`
	PVDriversDetected bool              `xmlrpc:"PV_drivers_detected"`
	Networks          map[string]string `xmlrpc:"networks"`
	OSVersion         map[string]string `xmlrpc:"os_version"`
	Other             map[string]string `xmlrpc:"other"`
	Live              bool              `xmlrpc:"live"`
}

func (w *guestMetricsWire) record(ref string) *GuestMetrics {
	return &GuestMetrics{Ref: ref, UUID: w.UUID, PVDriversDetected: w.PVDriversDetected,
		Networks: orEmpty(w.Networks), OSVersion: orEmpty(w.OSVersion), Other: orEmpty(w.Other), Live: w.Live}
}

// SR is a storage repository.
type SR struct {
	Ref               string
	UUID              string
	NameLabel         string
	Type              string
	ContentType       string
	Shared            bool
	PhysicalSize      int64
	PhysicalUtil      int64
	AllowedOperations []string
	PBDs              []string
}

type srWire struct {
	UUID              string   `xmlrpc:"uuid"`
	NameLabel         string   `xmlrpc:"name_label"`
	Type              string   `xmlrpc:"type"`
	ContentType       string   `xmlrpc:"content_type"`
	Shared            bool     `xmlrpc:"shared"`
	PhysicalSize      string   `xmlrpc:"physical_size"`
	PhysicalUtil      string   `xmlrpc:"physical_utilisation"`
	AllowedOperations []string `xmlrpc:"allowed_operations"`
	PBDs              []string `xmlrpc:"PBDs"`
}

func (w *srWire) record(ref string) *SR {
	return &SR{Ref: ref, UUID: w.UUID, NameLabel: w.NameLabel, Type: w.Type, ContentType: w.ContentType,
		Shared: w.Shared, PhysicalSize: atoi(w.PhysicalSize), PhysicalUtil: atoi(w.PhysicalUtil),
		AllowedOperations: w.AllowedOperations, PBDs: w.PBDs}
}

// Allows tells whether an SR's allowed_operations has op (such as vdi_create).
func (s *SR) Allows(op string) bool { return slices.Contains(s.AllowedOperations, op) }

// PBD connects a host to an SR.
type PBD struct {
	Ref               string
	Host              string
	SR                string
	CurrentlyAttached bool
}

type pbdWire struct {
	Host              string `xmlrpc:"host"`
	SR                string `xmlrpc:"SR"`
	CurrentlyAttached bool   `xmlrpc:"currently_attached"`
}

func (w *pbdWire) record(ref string) *PBD {
	return &PBD{Ref: ref, Host: ref0(w.Host), SR: ref0(w.SR), CurrentlyAttached: w.CurrentlyAttached}
}

// VDI is a virtual disk.
type VDI struct {
	Ref               string
	UUID              string
	NameLabel         string
	SR                string
	VirtualSize       int64
	Type              string
	IsSnapshot        bool
	VBDs              []string
	OtherConfig       map[string]string
	AllowedOperations []string
	// PhysicalUtilisation is the space the VDI takes on its SR.
	PhysicalUtilisation int64
	Sharable            bool
}

type vdiWire struct {
	UUID              string            `xmlrpc:"uuid"`
	NameLabel         string            `xmlrpc:"name_label"`
	SR                string            `xmlrpc:"SR"`
	VirtualSize       string            `xmlrpc:"virtual_size"`
	Type              string            `xmlrpc:"type"`
	IsASnapshot       bool              `xmlrpc:"is_a_snapshot"`
	VBDs              []string          `xmlrpc:"VBDs"`
	OtherConfig       map[string]string `xmlrpc:"other_config"`
	AllowedOperations []string          `xmlrpc:"allowed_operations"`
	PhysicalUtil      string            `xmlrpc:"physical_utilisation"`
	Sharable          bool              `xmlrpc:"sharable"`
}

func (w *vdiWire) record(ref string) *VDI {
	return &VDI{Ref: ref, UUID: w.UUID, NameLabel: w.NameLabel, SR: ref0(w.SR), VirtualSize: atoi(w.VirtualSize),
		Type: w.Type, IsSnapshot: w.IsASnapshot, VBDs: w.VBDs, OtherConfig: orEmpty(w.OtherConfig),
		AllowedOperations: w.AllowedOperations, PhysicalUtilisation: atoi(w.PhysicalUtil), Sharable: w.Sharable}
}

// Allows tells whether a VDI's allowed_operations has op (such as resize).
func (v *VDI) Allows(op string) bool { return slices.Contains(v.AllowedOperations, op) }

// VBD attaches a VDI to a VM.
type VBD struct {
	Ref               string
	UUID              string
	VM                string
	VDI               string
	Userdevice        string
	Type              string
	Mode              string
	Bootable          bool
	Unpluggable       bool
	Empty             bool
	CurrentlyAttached bool
	AllowedOperations []string
}

type vbdWire struct {
	UUID              string   `xmlrpc:"uuid"`
	VM                string   `xmlrpc:"VM"`
	VDI               string   `xmlrpc:"VDI"`
	Userdevice        string   `xmlrpc:"userdevice"`
	Type              string   `xmlrpc:"type"`
	Mode              string   `xmlrpc:"mode"`
	Bootable          bool     `xmlrpc:"bootable"`
	Unpluggable       bool     `xmlrpc:"unpluggable"`
	Empty             bool     `xmlrpc:"empty"`
	CurrentlyAttached bool     `xmlrpc:"currently_attached"`
	AllowedOperations []string `xmlrpc:"allowed_operations"`
}

func (w *vbdWire) record(ref string) *VBD {
	return &VBD{Ref: ref, UUID: w.UUID, VM: ref0(w.VM), VDI: ref0(w.VDI), Userdevice: w.Userdevice, Type: w.Type,
		Mode: w.Mode, Bootable: w.Bootable, Unpluggable: w.Unpluggable, Empty: w.Empty,
		CurrentlyAttached: w.CurrentlyAttached, AllowedOperations: w.AllowedOperations}
}

// Allows tells whether a VBD's allowed_operations has op (such as plug).
func (v *VBD) Allows(op string) bool { return slices.Contains(v.AllowedOperations, op) }

// VIF attaches a VM to a network.
type VIF struct {
	Ref               string
	UUID              string
	VM                string
	Network           string
	Device            string
	MAC               string
	CurrentlyAttached bool
	AllowedOperations []string
}

type vifWire struct {
	UUID              string   `xmlrpc:"uuid"`
	VM                string   `xmlrpc:"VM"`
	Network           string   `xmlrpc:"network"`
	Device            string   `xmlrpc:"device"`
	MAC               string   `xmlrpc:"MAC"`
	CurrentlyAttached bool     `xmlrpc:"currently_attached"`
	AllowedOperations []string `xmlrpc:"allowed_operations"`
}

func (w *vifWire) record(ref string) *VIF {
	return &VIF{Ref: ref, UUID: w.UUID, VM: ref0(w.VM), Network: ref0(w.Network), Device: w.Device, MAC: w.MAC,
		CurrentlyAttached: w.CurrentlyAttached, AllowedOperations: w.AllowedOperations}
}

// Allows tells whether a VIF's allowed_operations has op (such as plug).
func (v *VIF) Allows(op string) bool { return slices.Contains(v.AllowedOperations, op) }

// Network is a virtual network.
type Network struct {
	Ref       string
	UUID      string
	NameLabel string
	Bridge    string
}

type networkWire struct {
	UUID      string `xmlrpc:"uuid"`
	NameLabel string `xmlrpc:"name_label"`
	Bridge    string `xmlrpc:"bridge"`
}

func (w *networkWire) record(ref string) *Network {
	return &Network{Ref: ref, UUID: w.UUID, NameLabel: w.NameLabel, Bridge: w.Bridge}
}

func atoi(s string) int64 {
	i, _ := strconv.ParseInt(s, 10, 64)
	return i
}

func ref0(r string) string {
	if r == NullRef {
		return ""
	}
	return r
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
