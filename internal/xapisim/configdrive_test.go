package xapisim

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	. "github.com/onsi/gomega"
)

// configDriveISO builds a NoCloud config drive as the operator writes it
// with go-diskfs: ISO 9660 with Rock Ridge, labelled label, the files at
// the root.
func configDriveISO(t testing.TB, label string, files map[string]string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cidata.iso")
	b, err := file.CreateFromPath(path, 4*mib)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := iso9660.Create(b, 0, 0, 2048, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		f, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: label}); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	image, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return image
}

// guestMetric reads a map field of a VM's guest metrics.
func (c *rawClient) guestMetric(vm, field string) map[string]any {
	c.t.Helper()
	gm := c.field("VM", vm, "guest_metrics").(string)
	if gm == nullRef {
		return map[string]any{}
	}
	return c.field("VM_guest_metrics", gm, field).(map[string]any)
}

// bootWithConfigDrive installs a VM with one VIF, attaches a disk holding
// image and starts it.
func (c *rawClient) bootWithConfigDrive(base string, image []byte) string {
	c.t.Helper()
	vm := c.install("Debian Bookworm 12", "cloud")
	c.createVIF(vm, networkEth0, "0")
	vdi := c.must("VDI.create", vdiRecord(c.srRef(srNFS), 4*mib)).(string)
	if resp, _ := c.putRaw(base, vdi, "", image); resp.StatusCode != http.StatusOK {
		c.t.Fatalf("import: HTTP %d", resp.StatusCode)
	}
	c.must("VBD.create", vbdRecord(vm, vdi, "3"))
	c.must("VM.start", vm, false, false)
	return vm
}

// TestGuestReadsANoCloudConfigDrive checks the guest's cloud-init: the
// hostname of meta-data in VM_guest_metrics.other["hostname"] and the
// first static address of network-config (version 1 and 2) as the first
// interface's address.
func TestGuestReadsANoCloudConfigDrive(t *testing.T) {
	for name, networkConfig := range map[string]string{
		"v1": "version: 1\nconfig:\n- type: physical\n  name: eth0\n  subnets:\n  - type: static\n    address: 192.0.2.10/24\n    gateway: 192.0.2.1\n",
		"v2": "network:\n  version: 2\n  ethernets:\n    eth0:\n      addresses: [\"2001:db8::5/64\", 192.0.2.10/24]\n    eth1:\n      addresses: [198.51.100.1/24]\n",
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			s := newSim(t, Config{})
			c := newClient(t, s.URL()).login()
			vm := c.bootWithConfigDrive(s.URL(), configDriveISO(t, "cidata", map[string]string{
				"meta-data":      "instance-id: iid-web-1\nlocal-hostname: web-1\n",
				"user-data":      "#cloud-config\n",
				"network-config": networkConfig,
			}))
			g.Expect(c.guestMetric(vm, "other")).To(HaveKeyWithValue("hostname", "web-1"))
			g.Expect(c.guestMetric(vm, "networks")).To(And(
				HaveKeyWithValue("0/ip", "192.0.2.10"), HaveKeyWithValue("0/ipv4/0", "192.0.2.10")))
		})
	}
}

// TestGuestIgnoresOtherDisks checks that a disk not labelled cidata, or a
// drive without network-config, leaves the made-up address.
func TestGuestIgnoresOtherDisks(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	files := map[string]string{"meta-data": "instance-id: a\nlocal-hostname: other\n", "user-data": ""}
	vm := c.bootWithConfigDrive(s.URL(), configDriveISO(t, "NOTCIDATA", files))
	g.Expect(c.guestMetric(vm, "other")).NotTo(HaveKey("hostname"))

	s2 := newSim(t, Config{})
	c2 := newClient(t, s2.URL()).login()
	vm = c2.bootWithConfigDrive(s2.URL(), configDriveISO(t, "cidata", files))
	g.Expect(c2.guestMetric(vm, "other")).To(HaveKeyWithValue("hostname", "other"))
	g.Expect(c2.guestMetric(vm, "networks")).To(HaveKeyWithValue("0/ip", HavePrefix("10.")))
}
