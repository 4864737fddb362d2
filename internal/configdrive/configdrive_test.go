package configdrive

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"
	. "github.com/onsi/gomega"
)

// The image is read back with another library than the one that wrote it,
// kdomanski/iso9660, as cloud-init's mount would. go-diskfs marks its Rock
// Ridge entries as RRIP 1.12 (extension identifier IEEE_P1282), which Linux
// reads as it reads RRIP 1.10; kdomanski/iso9660 looks for the 1.10
// identifier (RRIP_1991A) only, so the test renames the extension, same
// length, before reading: the NM (name) entries are the same in both.
func TestBuildReadsBackWithAnotherReader(t *testing.T) {
	g := NewWithT(t)
	f := Files{
		MetaData:      map[string]string{"instance-id": "3f1c", "local-hostname": "web-1"},
		UserData:      []byte("#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA test\n"),
		NetworkConfig: []byte("version: 2\nethernets:\n  eth0:\n    addresses: [10.0.0.5/24]\n"),
	}
	img, err := Build(f)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(img) % 2048).To(BeZero())

	g.Expect(bytes.Count(img, []byte("IEEE_P1282"))).To(Equal(1))
	rrip110 := bytes.Replace(img, []byte("IEEE_P1282"), []byte("RRIP_1991A"), 1)
	image, err := iso9660.OpenImage(bytes.NewReader(rrip110))
	g.Expect(err).NotTo(HaveOccurred())
	label, err := image.Label()
	g.Expect(err).NotTo(HaveOccurred())
	// go-diskfs pads the identifier with NULs where ISO 9660 pads with
	// spaces; blkid (which cloud-init asks) reads up to the first NUL.
	g.Expect(strings.TrimRight(label, " \x00")).To(Equal(VolumeLabel))
	root, err := image.RootDir()
	g.Expect(err).NotTo(HaveOccurred())
	children, err := root.GetChildren()
	g.Expect(err).NotTo(HaveOccurred())
	got := map[string]string{}
	for _, c := range children {
		data, err := io.ReadAll(c.Reader())
		g.Expect(err).NotTo(HaveOccurred())
		got[c.Name()] = string(data)
	}
	g.Expect(got).To(HaveKeyWithValue("user-data", string(f.UserData)))
	g.Expect(got).To(HaveKeyWithValue("network-config", string(f.NetworkConfig)))
	g.Expect(got).To(HaveKeyWithValue("meta-data", "instance-id: 3f1c\nlocal-hostname: web-1\n"))
}

func TestHashAndLimits(t *testing.T) {
	g := NewWithT(t)
	a := Files{MetaData: map[string]string{"instance-id": "x"}, UserData: []byte("a")}
	b := Files{MetaData: map[string]string{"instance-id": "x"}, UserData: []byte("b")}
	ha, err := a.Hash()
	g.Expect(err).NotTo(HaveOccurred())
	hb, _ := b.Hash()
	ha2, _ := a.Hash()
	g.Expect(ha).To(Equal(ha2))
	g.Expect(ha).NotTo(Equal(hb))
	// The lengths are hashed: moving bytes from one file to the next is a change.
	c := Files{MetaData: map[string]string{"instance-id": "x"}, UserData: []byte("ab")}
	d := Files{MetaData: map[string]string{"instance-id": "x"}, UserData: []byte("a"), NetworkConfig: []byte("b")}
	hc, _ := c.Hash()
	hd, _ := d.Hash()
	g.Expect(hc).NotTo(Equal(hd))

	_, err = Build(Files{UserData: make([]byte, MaxDataSize+1)})
	g.Expect(err).To(MatchError(ErrTooLarge))
	img, err := Build(Files{MetaData: map[string]string{"instance-id": "x"}})
	g.Expect(err).NotTo(HaveOccurred(), "no network-config is fine")
	g.Expect(img).NotTo(BeEmpty())
}
