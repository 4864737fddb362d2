package xapisim

import (
	"strconv"
	"strings"
)

// devNum is a disk device as xapi-idl's Device_number.t has it: a bus, a
// disk number and a partition.
type devNum struct {
	bus        string // "xen", "scsi", "floppy", "ide"
	disk, part int64
}

// devBusMax are the largest disk and partition numbers of each bus
// (Device_number.max_of, with the deprecated IDE encoding xapi uses).
var devBusMax = map[string][2]int64{
	"xen": {1<<20 - 1, 15}, "scsi": {15, 15}, "floppy": {2, 0}, "ide": {19, 63},
}

// makeDevNum is Device_number.make: the device if its numbers are in range.
func makeDevNum(bus string, disk, part int64) (devNum, bool) {
	m := devBusMax[bus]
	if disk < 0 || disk > m[0] || part < 0 || part > m[1] {
		return devNum{}, false
	}
	return devNum{bus, disk, part}, true
}

// devOfDiskNumber is Device_number.of_disk_number: an HVM guest's first
// four disks are IDE, every other disk is a Xen one.
func devOfDiskNumber(hvm bool, n int64) (devNum, bool) {
	if hvm && n < 4 {
		return makeDevNum("ide", n, 0)
	}
	return makeDevNum("xen", n, 0)
}

// devOfString is Device_number.of_string: a disk number (OCaml's
// int_of_string), else a Linux device name.
func devOfString(hvm bool, s string) (devNum, bool) {
	if n, ok := ocamlInt(s); ok {
		if d, ok := devOfDiskNumber(hvm, n); ok {
			return d, true
		}
	}
	return devOfLinux(s)
}

// devOfLinux is Device_number.of_linux_device: xvd, sd, fd and hd names with
// a base-26 disk and an optional partition number ("xvdb2"), or d<disk> and
// d<disk>p<partition>. Its numbers are not range-checked.
func devOfLinux(s string) (devNum, bool) {
	for _, p := range []struct{ prefix, bus string }{{"xvd", "xen"}, {"sd", "scsi"}, {"fd", "floppy"}, {"hd", "ide"}} {
		if rest, ok := strings.CutPrefix(s, p.prefix); ok {
			letters := len(rest) - len(strings.TrimLeft(rest, "abcdefghijklmnopqrstuvwxyz"))
			if letters == 0 {
				return devNum{}, false
			}
			disk := int64(0)
			for _, c := range rest[:letters] {
				disk = disk*26 + int64(c-'a'+1)
			}
			part := int64(0)
			if digits := rest[letters:]; digits != "" {
				n, err := strconv.ParseUint(digits, 10, 62)
				if err != nil {
					return devNum{}, false
				}
				part = int64(n)
			}
			return devNum{p.bus, disk - 1, part}, true
		}
	}
	rest, ok := strings.CutPrefix(s, "d")
	if !ok {
		return devNum{}, false
	}
	diskText, partText, hasPart := strings.Cut(rest, "p")
	disk, err := strconv.ParseUint(diskText, 10, 62)
	if err != nil {
		return devNum{}, false
	}
	part := uint64(0)
	if hasPart {
		if part, err = strconv.ParseUint(partText, 10, 62); err != nil {
			return devNum{}, false
		}
	}
	return devNum{"xen", int64(disk), int64(part)}, true
}

// possibleDevices is xapi_vm_helpers.ml possible_VBD_devices_of_string:
// what a userdevice or device string may name, for an HVM guest or a PV one.
func possibleDevices(s string) []devNum {
	var out []devNum
	for _, hvm := range []bool{true, false} {
		if d, ok := devOfString(hvm, s); ok {
			out = append(out, d)
		}
	}
	return out
}

// linuxDevice is Device_number.to_linux_device: xvd (for Xen and IDE
// disks), sd or fd, the disk in base 26, and the partition if any.
func (d devNum) linuxDevice() string {
	prefix := map[string]string{"xen": "xvd", "ide": "xvd", "scsi": "sd", "floppy": "fd"}[d.bus]
	name := prefix + base26(int(d.disk))
	if d.part != 0 {
		name += strconv.FormatInt(d.part, 10)
	}
	return name
}

// ocamlInt is OCaml's int_of_string: an optional sign, then decimal digits
// or 0x, 0o, 0b or 0u and digits of that base, underscores allowed after the
// first digit.
func ocamlInt(s string) (int64, bool) {
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	base := 10
	if len(s) > 2 && s[0] == '0' {
		switch s[1] {
		case 'x', 'X':
			base = 16
		case 'o', 'O':
			base = 8
		case 'b', 'B':
			base = 2
		case 'u', 'U':
			base = 10
		}
		if base != 10 || s[1] == 'u' || s[1] == 'U' {
			s = s[2:]
		}
	}
	if s == "" || s[0] == '_' {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), base, 63)
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}
