package xapisim

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	yaml "go.yaml.in/yaml/v3"
)

// The simulated guest runs cloud-init, whose NoCloud datasource reads a
// config drive at boot (cloudinit/sources/DataSourceNoCloud.py): a
// filesystem labelled "cidata" holding meta-data (local-hostname,
// instance-id), user-data and optionally network-config (network config
// version 1 or 2). The guest takes the hostname and the first static IPv4
// address of the first interface.

// cloudInit is what a guest's cloud-init set up from a config drive; it
// stays on the guest's disk for later boots.
type cloudInit struct {
	instanceID, hostname string
	// address is the first interface's static IPv4 address, if any.
	address string
}

// readConfigDrive is what the guest finds at boot on the disks attached to
// vm: the first whose content is an ISO 9660 image labelled cidata (as
// cloud-init's blkid lookup finds it, whatever the VBD's type).
func (s *Server) readConfigDrive(vm *object) (cloudInit, bool) {
	for _, ref := range vm.set("VBDs") {
		vbd, ok := s.db.get("VBD", ref.(string))
		if !ok || vbd.bool("empty") || !vbd.bool("currently_attached") {
			continue
		}
		vdi, ok := s.db.get("VDI", vbd.str("VDI"))
		if !ok || len(vdi.sim.data) == 0 {
			continue
		}
		if ci, err := parseConfigDrive(vdi.sim.data); err == nil {
			return ci, true
		}
	}
	return cloudInit{}, false
}

// parseConfigDrive reads a NoCloud ISO image: label cidata, meta-data, and
// network-config if there is one.
func parseConfigDrive(image []byte) (cloudInit, error) {
	fsys, err := iso9660.Read(memStorage{bytes.NewReader(image)}, int64(len(image)), 0, 2048)
	if err != nil {
		return cloudInit{}, err
	}
	// blkid reads the volume identifier as a C string less trailing blanks
	// (go-diskfs pads it with NULs, mkisofs with spaces); cloud-init
	// compares labels case-insensitively.
	label, _, _ := strings.Cut(fsys.Label(), "\x00")
	if !strings.EqualFold(strings.TrimRight(label, " "), "cidata") {
		return cloudInit{}, errors.New("not labelled cidata")
	}
	meta, err := readISOFile(fsys, "/meta-data")
	if err != nil {
		return cloudInit{}, err
	}
	var md struct {
		InstanceID    string `yaml:"instance-id"`
		LocalHostname string `yaml:"local-hostname"`
	}
	if err := yaml.Unmarshal(meta, &md); err != nil {
		return cloudInit{}, err
	}
	ci := cloudInit{instanceID: md.InstanceID, hostname: md.LocalHostname}
	if nc, err := readISOFile(fsys, "/network-config"); err == nil {
		ci.address = firstStaticIPv4(nc)
	}
	return ci, nil
}

func readISOFile(fsys *iso9660.FileSystem, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(f)
}

// firstStaticIPv4 is the first static IPv4 address cloud-init would give
// the first interface of a network config, version 1 (the first physical
// entry's first static subnet) or 2 (the first ethernet's first IPv4
// address), possibly under a top-level "network" key; "" if none.
func firstStaticIPv4(config []byte) string {
	var doc yaml.Node
	if yaml.Unmarshal(config, &doc) != nil || len(doc.Content) == 0 {
		return ""
	}
	root := doc.Content[0]
	if n := mapValue(root, "network"); n != nil {
		root = n
	}
	var nc struct {
		Version int `yaml:"version"`
		Config  []struct {
			Type    string `yaml:"type"`
			Subnets []struct {
				Type    string `yaml:"type"`
				Address string `yaml:"address"`
			} `yaml:"subnets"`
		} `yaml:"config"`
	}
	if root.Decode(&nc) != nil {
		return ""
	}
	if nc.Version == 2 {
		return firstV2Address(mapValue(root, "ethernets"))
	}
	for _, iface := range nc.Config {
		if iface.Type != "physical" {
			continue
		}
		for _, sn := range iface.Subnets {
			if sn.Type == "static" || sn.Type == "static4" {
				return ipv4Of(sn.Address)
			}
		}
		return ""
	}
	return ""
}

// firstV2Address is the first IPv4 address of the first ethernet, in the
// order the file gives them.
func firstV2Address(ethernets *yaml.Node) string {
	if ethernets == nil || ethernets.Kind != yaml.MappingNode || len(ethernets.Content) < 2 {
		return ""
	}
	var eth struct {
		Addresses []string `yaml:"addresses"`
	}
	if ethernets.Content[1].Decode(&eth) != nil {
		return ""
	}
	for _, a := range eth.Addresses {
		if ip := ipv4Of(a); ip != "" {
			return ip
		}
	}
	return ""
}

// mapValue is the value of key in a YAML mapping node, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// ipv4Of is the IPv4 address of "a.b.c.d" or "a.b.c.d/len", else "".
func ipv4Of(s string) string {
	addr, _, _ := strings.Cut(s, "/")
	ip, err := netip.ParseAddr(addr)
	if err != nil || !ip.Is4() {
		return ""
	}
	return ip.String()
}

// memStorage is a read-only go-diskfs backend over a disk's bytes.
type memStorage struct{ *bytes.Reader }

var _ backend.Storage = memStorage{}

func (memStorage) Close() error { return nil }
func (m memStorage) Stat() (fs.FileInfo, error) {
	return memInfo(m.Size()), nil
}
func (memStorage) Sys() (*os.File, error)                  { return nil, backend.ErrNotSuitable }
func (memStorage) Writable() (backend.WritableFile, error) { return nil, backend.ErrIncorrectOpenMode }
func (memStorage) Path() string                            { return "" }

// memInfo describes a memStorage of that size.
type memInfo int64

func (memInfo) Name() string       { return "vdi" }
func (i memInfo) Size() int64      { return int64(i) }
func (memInfo) Mode() fs.FileMode  { return 0o400 }
func (memInfo) ModTime() time.Time { return time.Time{} }
func (memInfo) IsDir() bool        { return false }
func (memInfo) Sys() any           { return nil }
