package vmservice

import (
	"encoding/xml"
	"strconv"
	"strings"
)

// DiskPlan is what an install makes of the disks a template's
// other_config:disks describes (the XML VM.provision reads,
// xapi_templates.ml): every disk without an SR goes to DefaultSR, and the
// bootable one (root) to RootSR, at least RootSize bytes. Empty fields
// leave the template's value.
type DiskPlan struct {
	DefaultSR string
	RootSR    string
	RootSize  int64
}

type provisionXML struct {
	XMLName xml.Name        `xml:"provision"`
	Disks   []provisionDisk `xml:"disk"`
}

type provisionDisk struct {
	Attrs []xml.Attr `xml:",any,attr"`
}

func (d *provisionDisk) attr(name string) (string, int) {
	for i, a := range d.Attrs {
		if a.Name.Local == name {
			return a.Value, i
		}
	}
	return "", -1
}

func (d *provisionDisk) set(name, value string) {
	if _, i := d.attr(name); i >= 0 {
		d.Attrs[i].Value = value
		return
	}
	d.Attrs = append(d.Attrs, xml.Attr{Name: xml.Name{Local: name}, Value: value})
}

// Rewrite returns the provision XML disks with the plan applied; XML it
// cannot read, and XML the plan does not change, come back as they were.
func (p DiskPlan) Rewrite(disks string) string {
	if disks == "" {
		return disks
	}
	var doc provisionXML
	if err := xml.Unmarshal([]byte(disks), &doc); err != nil || len(doc.Disks) == 0 {
		return disks
	}
	changed := false
	root := rootIndex(doc.Disks)
	for i := range doc.Disks {
		d := &doc.Disks[i]
		sr, _ := d.attr("sr")
		want := sr
		switch {
		case i == root && p.RootSR != "":
			want = p.RootSR
		case sr == "" && p.DefaultSR != "":
			want = p.DefaultSR
		}
		if want != sr {
			d.set("sr", want)
			changed = true
		}
		if size, _ := d.attr("size"); i == root && p.RootSize > 0 {
			if n, err := strconv.ParseInt(size, 10, 64); err != nil || n < p.RootSize {
				d.set("size", strconv.FormatInt(p.RootSize, 10))
				changed = true
			}
		}
	}
	if !changed {
		return disks
	}
	var b strings.Builder
	b.WriteString("<provision>")
	for _, d := range doc.Disks {
		b.WriteString("<disk")
		for _, a := range d.Attrs {
			b.WriteString(" " + a.Name.Local + `="`)
			_ = xml.EscapeText(&b, []byte(a.Value))
			b.WriteString(`"`)
		}
		b.WriteString("/>")
	}
	b.WriteString("</provision>")
	return b.String()
}

// rootIndex is the template's root disk: the bootable one, else the first.
func rootIndex(disks []provisionDisk) int {
	for i := range disks {
		if b, _ := disks[i].attr("bootable"); b == "true" {
			return i
		}
	}
	return 0
}
