package xapisim

import (
	"fmt"
	"regexp"
	"strings"
)

// What the SR's SM driver (xapi-project/sm) does for the simulator's SR
// types: nfs (drivers/NFSSR.py on FileSR.py: thin VHD files), lvm
// (LVHDSR.py: thick VHD logical volumes) and iso (ISOSR.py, here a
// read-only NFS export).

// smCapabilities are each driver's CAPABILITIES, as xapi reads them into the
// SM object's features ("VDI_RESET_ON_BOOT/2" is that capability, version 2).
var smCapabilities = map[string][]string{
	"nfs": {"SR_PROBE", "SR_UPDATE", "SR_CACHING", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH",
		"VDI_UPDATE", "VDI_CLONE", "VDI_SNAPSHOT", "VDI_RESIZE", "VDI_GENERATE_CONFIG", "VDI_MIRROR",
		"VDI_RESET_ON_BOOT/2", "ATOMIC_PAUSE", "VDI_CONFIG_CBT", "VDI_ACTIVATE", "VDI_DEACTIVATE",
		"THIN_PROVISIONING", "VDI_READ_CACHING"},
	"lvm": {"SR_PROBE", "SR_UPDATE", "SR_TRIM", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH",
		"VDI_MIRROR", "VDI_CLONE", "VDI_SNAPSHOT", "VDI_RESIZE", "ATOMIC_PAUSE", "VDI_RESET_ON_BOOT/2",
		"VDI_UPDATE", "VDI_CONFIG_CBT", "VDI_ACTIVATE", "VDI_DEACTIVATE"},
	"iso": {"VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH", "SR_SCAN", "SR_ATTACH", "SR_DETACH"},
}

// smHas tells whether the driver of an SR of type srType has a capability
// (smint.ml has_capability, whatever its version).
func smHas(srType, capability string) bool {
	for _, c := range smCapabilities[srType] {
		if name, _, _ := strings.Cut(c, "/"); name == capability {
			return true
		}
	}
	return false
}

// The VHD and LVM sizes sm uses (libs/sm/vhdutil.py, lvhdutil.py, lvutil.py,
// journaler.py).
const (
	vhdBlockSize     = 2 * mib
	vhdMinSize       = 2 * mib
	vhdMaxSize       = 2040 * gib
	lvmSizeIncrement = 4 * mib
	lvhdMaxSize      = 2 * 1024 * 1024 * mib // lvhdutil.MSIZE
	journalLVSize    = 4 * mib
)

func roundUp(divisor, v int64) int64 {
	if v == 0 {
		v = 1
	}
	return (v + divisor - 1) / divisor * divisor
}

// vhdOverheadEmpty is vhdutil.calcOverheadEmpty: the metadata of an empty
// VHD of that virtual size.
func vhdOverheadEmpty(size int64) int64 {
	sizeMB := size / mib
	overhead := int64(3 * 1024)
	overhead += sizeMB / 2 * 4
	overhead = roundUp(512, overhead)
	overhead += sizeMB / 2 / 8
	return roundUp(4096, overhead)
}

// lvhdSize is lvhdutil.calcSizeVHDLV: the logical volume of a thick VHD of
// that virtual size, its metadata preallocated for the largest size.
func lvhdSize(virtual int64) int64 {
	bitmap := (virtual + vhdBlockSize - 1) / vhdBlockSize * 4096
	return roundUp(lvmSizeIncrement, virtual+vhdOverheadEmpty(lvhdMaxSize)+bitmap)
}

// smError is an SM driver's XenError as xapi reports it (sm_exec.ml:
// SR_BACKEND_FAILURE_<code> [""; description [opterr=...]; stderr]), with
// the codes and descriptions of XE_SR_ERRORCODES.xml.
func smError(key, opterr string) *Failure {
	codes := map[string]struct {
		code int
		desc string
	}{
		"SRNoSpace": {44, "There is insufficient space"},
		"VDICreate": {78, "VDI Creation failed"},
		"VDISize":   {79, "VDI Invalid size"},
		"VDIClone":  {81, "Failed to clone VDI"},
	}
	e := codes[key]
	msg := e.desc
	if opterr != "" {
		msg += " [opterr=" + opterr + "]"
	}
	return newFailure(fmt.Sprintf("SR_BACKEND_FAILURE_%d", e.code), "", msg, "")
}

// validateVHDSize is vhdutil.validate_and_round_vhd_size: at most 2040 GiB,
// at least 2 MiB, rounded up to whole 2 MiB blocks.
func validateVHDSize(size int64) (int64, error) {
	if size < 0 || size > vhdMaxSize {
		return 0, smError("VDISize", fmt.Sprintf("VDI size must be between 1 MB and %d MB", vhdMaxSize/mib))
	}
	return roundUp(vhdBlockSize, max(size, vhdMinSize)), nil
}

// srFree is the space left on an SR: for an LVM SR the volume group's free
// space, for a file SR the file system's.
func srFree(sr *object) int64 { return sr.int("physical_size") - sr.int("physical_utilisation") }

// smVDI is what an SM driver makes of a new disk.
type smVDI struct {
	virtual, physical int64
	smConfig          map[string]any
}

// isoPathRE is ISOSR.vdi_path_regex, which Python's re.match anchors at the
// start only.
var isoPathRE = regexp.MustCompile(`(?i)^[a-z0-9.-]+\.(iso|img)`)

// smCreate is the SM driver's vdi_create for a disk of the requested size,
// or its error. A file SR (nfs, FileSR.py create) stores a thin VHD whose
// only content is its metadata, and fails only when the file system cannot
// hold that (vhd-util's ENOSPC, error 28); sm_config keeps only what
// VDI.py _db_introduce passes through (base_mirror, key_hash). An LVM SR
// (LVHDSR.py create) allocates the whole volume after checking the volume
// group's free space (SRNoSpace), keeping the caller's sm_config with
// vdi_type. The ISO library is a read-only export: ISOVDI.create cannot
// create the file.
func smCreate(sr *object, vdiUUID string, size int64, smConfig map[string]any) (smVDI, error) {
	switch sr.str("type") {
	case "iso":
		name := vdiUUID + ".img"
		if p, ok := smConfig["path"].(string); ok {
			if !isoPathRE.MatchString(p) {
				return smVDI{}, smError("VDICreate", fmt.Sprintf("Invalid path %q", p))
			}
			name = p
		}
		return smVDI{}, smError("VDICreate",
			fmt.Sprintf("could not create file: %q", "/run/sr-mount/"+sr.str("uuid")+"/"+name))
	case "lvm":
		virtual, err := validateVHDSize(size)
		if err != nil {
			return smVDI{}, err
		}
		lv := lvhdSize(virtual)
		if lv > srFree(sr) {
			return smVDI{}, smError("SRNoSpace", "")
		}
		config := map[string]any{}
		for k, v := range smConfig {
			config[k] = v
		}
		config["vdi_type"] = "vhd"
		return smVDI{virtual: virtual, physical: lv, smConfig: config}, nil
	}
	virtual, err := validateVHDSize(size)
	if err != nil {
		return smVDI{}, err
	}
	overhead := vhdOverheadEmpty(virtual)
	if overhead > srFree(sr) {
		return smVDI{}, smError("VDICreate", "error 28")
	}
	config := map[string]any{}
	for _, k := range []string{"base_mirror", "key_hash"} {
		if v, ok := smConfig[k]; ok && v != "" {
			config[k] = v
		}
	}
	return smVDI{virtual: virtual, physical: overhead, smConfig: config}, nil
}

// smCloneSpace checks the space an SM clone of vdi needs in its own SR: on
// LVM (LVHDSR.py _snapshot) the new leaf's full volume, the base copy
// (deflated to its metadata, 8 MiB for a disk never written) and two
// journal volumes; on a file SR two empty VHD children (FileSR.py
// _snapshot fails with vhd-util's ENOSPC, error 28).
func smCloneSpace(sr, vdi *object) error {
	if sr.str("type") == "lvm" {
		base := roundUp(lvmSizeIncrement, vhdOverheadEmpty(lvhdMaxSize))
		if lvhdSize(vdi.int("virtual_size"))+base+2*journalLVSize > srFree(sr) {
			return smError("SRNoSpace", "")
		}
		return nil
	}
	if 2*vhdOverheadEmpty(vdi.int("virtual_size")) > srFree(sr) {
		return smError("VDIClone", "VDI clone failed error 28")
	}
	return nil
}

// smResize is the SM driver's vdi_resize (FileSR.py and LVHDSR.py resize):
// shrinking is refused before anything else, the same size changes
// nothing, the new size is validated and rounded like a new disk's; LVM
// grows the volume after checking the free space. It returns the new
// virtual size and space used.
func smResize(sr, vdi *object, size int64) (virtual, physical int64, err error) {
	oldVirtual, oldPhysical := vdi.int("virtual_size"), vdi.int("physical_utilisation")
	if size < oldVirtual {
		return 0, 0, smError("VDISize", "shrinking not allowed")
	}
	if size == oldVirtual {
		return oldVirtual, oldPhysical, nil
	}
	if virtual, err = validateVHDSize(size); err != nil {
		return 0, 0, err
	}
	if sr.str("type") == "lvm" {
		physical = lvhdSize(virtual)
		if physical-oldPhysical > srFree(sr) {
			return 0, 0, smError("SRNoSpace", "")
		}
		return virtual, physical, nil
	}
	physical = max(oldPhysical, vhdOverheadEmpty(virtual))
	if physical-oldPhysical > srFree(sr) {
		return 0, 0, smError("VDISize", "resize operation failed")
	}
	return virtual, physical, nil
}
