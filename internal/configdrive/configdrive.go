// Package configdrive builds the NoCloud config drive cloud-init reads at a
// VM's first boot: an ISO 9660 image with Rock Ridge names, labelled
// cidata, holding meta-data, user-data and optionally network-config at its
// root (cloud-init's DataSourceNoCloud looks for a filesystem labelled
// cidata; Xen Orchestra gives XenServer VMs the same). The image is written
// with github.com/diskfs/go-diskfs; nothing here shells out.
package configdrive

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"sigs.k8s.io/yaml"
)

// VolumeLabel is the label cloud-init's NoCloud source looks for.
const VolumeLabel = "cidata"

// MaxDataSize bounds what a drive holds, all files together: cloud-init
// data is a few KiB; megabytes are a mistake (or an attack on the pool's
// storage).
const MaxDataSize = 4 << 20

// ErrTooLarge is returned for files larger than MaxDataSize together.
var ErrTooLarge = fmt.Errorf("configdrive: the files exceed %d bytes together", MaxDataSize)

// Files are what a drive holds.
type Files struct {
	// MetaData entries, written as YAML (instance-id, local-hostname, ...).
	MetaData map[string]string
	// UserData and NetworkConfig are written as given; NetworkConfig is
	// left out when empty.
	UserData, NetworkConfig []byte
}

// Hash is the hex SHA-256 of the files: a drive that holds the same files
// has the same hash.
func (f Files) Hash() (string, error) {
	meta, err := f.metaData()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, part := range [][]byte{meta, f.UserData, f.NetworkConfig} {
		_, _ = fmt.Fprintf(h, "%d\n", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (f Files) metaData() ([]byte, error) {
	return yaml.Marshal(f.MetaData) // keys sorted: the same map, the same bytes
}

// Build returns the ISO image of the files.
func Build(f Files) ([]byte, error) {
	meta, err := f.metaData()
	if err != nil {
		return nil, err
	}
	if len(meta)+len(f.UserData)+len(f.NetworkConfig) > MaxDataSize {
		return nil, ErrTooLarge
	}
	dir, err := os.MkdirTemp("", "configdrive-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	out := filepath.Join(dir, "cidata.iso")
	osFile, err := os.Create(out) //nolint:gosec // a path in the temporary directory made above
	if err != nil {
		return nil, err
	}
	b := file.New(osFile, false)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		return nil, err
	}
	fsys, err := iso9660.Create(b, 0, 0, 2048, work)
	if err != nil {
		return nil, errors.Join(err, b.Close())
	}
	files := map[string][]byte{"meta-data": meta, "user-data": f.UserData}
	if len(f.NetworkConfig) > 0 {
		files["network-config"] = f.NetworkConfig
	}
	if err := writeFiles(fsys, files); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: VolumeLabel}); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	if err := b.Close(); err != nil {
		return nil, err
	}
	return os.ReadFile(out) //nolint:gosec // the same path
}

func writeFiles(fsys *iso9660.FileSystem, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		w, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return err
		}
		if _, err := w.Write(files[name]); err != nil {
			return errors.Join(err, w.Close())
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	return nil
}
