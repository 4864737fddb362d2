package xapisim

import (
	"bytes"
	"io"
)

// transferChunk is how much a transfer moves between progress updates.
const transferChunk = 64 << 10

// sectorSize is a disk sector.
const sectorSize = 512

// vhdBlockBitmap is the sector bitmap a VHD stores before each 2 MiB block.
const vhdBlockBitmap = 512

// errDeviceIO is vhd_tool_wrapper.ml's error for any vhd-tool failure.
func errDeviceIO() *Failure { return newFailure(errVDIIOError, "Device I/O errors") }

// serveImport is import_raw_vdi.ml localhost_handler once the request is
// checked: the format (raw only here), xapi's own chunk protocol (the
// chunked parameter, not modelled) and an HTTP Transfer-Encoding (INTERNAL_ERROR
// ["Cannot handle encoding: chunked"], HTTP 404: the body must come with a
// Content-Length) are checked; then the 200 headers go out and vhd-tool
// copies Content-Length bytes onto the disk. Writing past the disk's
// virtual size fails on that write ("we fail in an unhelpful manner on some
// write", import_raw_vdi.ml), as does a body that ends early: the task
// fails with VDI_IO_ERROR ["Device I/O errors"], what was written before
// stays. Otherwise the task succeeds with the VDI ref as its result.
func (s *Server) serveImport(t *rawTransfer) {
	if !t.format() {
		return
	}
	if _, given := queryFirst(t.r, "chunked"); given {
		t.refuse(newFailure(errInternalError, "xapi-simulator does not model chunked imports"))
		return
	}
	if len(t.r.TransferEncoding) > 0 {
		t.refuse(newFailure(errInternalError, "Cannot handle encoding: "+t.r.TransferEncoding[0]))
		return
	}
	t.startBody(map[string]string{"Content-Type": "application/octet-stream"})
	err := t.receive()
	s.mu.Lock()
	defer s.unlock()
	s.refreshVDIUsage(t.vdi)
	if err != nil {
		s.failTask(t.task, asFailure(err))
		return
	}
	s.completeTask(t.task, xmlValueText(t.vdi.ref))
}

// receive copies the request's body onto the VDI, moving the task's
// progress.
func (t *rawTransfer) receive() error {
	length := t.r.ContentLength
	buf := make([]byte, transferChunk)
	for off := int64(0); off < length; {
		n, err := io.ReadFull(t.r.Body, buf[:min(int64(len(buf)), length-off)])
		if n > 0 {
			if werr := t.s.writeVDI(t.vdi, off, buf[:n]); werr != nil {
				return werr
			}
			off += int64(n)
			t.setProgress(off, length)
		}
		if err != nil {
			return errDeviceIO()
		}
	}
	return nil
}

// writeVDI writes p at off on the disk, as far as its virtual size goes: a
// write past the end fails (the block device ends there). Only non-zero
// bytes move: vhd-tool skips zeros on a disk that reads as zeros
// (--prezeroed, Sm_fs_ops.must_write_zeroes_into_new_vdi), so on a thin SR
// a block is allocated once something other than zeros is written into it,
// and zeros written over earlier data leave that data (whole zero sectors
// are skipped; vhd-tool's exact granularity is uncertain).
func (s *Server) writeVDI(vdi *object, off int64, p []byte) error {
	s.mu.Lock()
	defer s.unlock()
	size := vdi.int("virtual_size")
	fits := p[:max(min(int64(len(p)), size-off), 0)]
	if end := off + int64(len(fits)); end > int64(len(vdi.sim.data)) && !allZero(fits) {
		vdi.sim.data = append(vdi.sim.data, make([]byte, end-int64(len(vdi.sim.data)))...)
	}
	for sec := int64(0); sec < int64(len(fits)); sec += sectorSize {
		if p := fits[sec:min(sec+sectorSize, int64(len(fits)))]; !allZero(p) {
			copy(vdi.sim.data[off+sec:], p)
		}
	}
	for b := off / vhdBlockSize; b*vhdBlockSize < off+int64(len(fits)); b++ {
		lo, hi := max(b*vhdBlockSize, off)-off, min((b+1)*vhdBlockSize, off+int64(len(fits)))-off
		if !allZero(fits[lo:hi]) {
			if vdi.sim.vhdBlocks == nil {
				vdi.sim.vhdBlocks = map[int64]bool{}
			}
			vdi.sim.vhdBlocks[b] = true
		}
	}
	if len(fits) < len(p) {
		return errDeviceIO()
	}
	return nil
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// refreshVDIUsage records the space a written disk takes, as its SM driver
// reports it: a thick LVM volume is all allocated from the start; a thin
// VHD file (nfs) grows by each block written, its bitmap sector and 2 MiB of
// data (vhdutil getSizePhys). The SR's utilisation follows.
func (s *Server) refreshVDIUsage(vdi *object) {
	sr, ok := s.db.get("SR", vdi.str("SR"))
	if !ok || sr.str("type") != "nfs" {
		return
	}
	physical := vhdOverheadEmpty(vdi.int("virtual_size")) + int64(len(vdi.sim.vhdBlocks))*(vhdBlockSize+vhdBlockBitmap)
	old := vdi.int("physical_utilisation")
	if physical <= old {
		return
	}
	s.db.update(vdi, "physical_utilisation", physical)
	s.db.update(sr, "physical_utilisation", sr.int("physical_utilisation")+physical-old)
}

// serveExport is export_raw_vdi.ml localhost_handler: the format (raw only
// here), then the 200 headers (Content-Type application/octet-stream,
// Content-Disposition attachment; filename="<vdi uuid>.raw") and the disk's
// virtual size in bytes, zeros where nothing was written; the task then
// succeeds with result "". A client that goes away fails it with
// VDI_IO_ERROR. The base parameter (a delta against another disk) is not
// modelled.
func (s *Server) serveExport(t *rawTransfer) {
	if !t.format() {
		return
	}
	s.mu.Lock()
	uuid, size := t.vdi.str("uuid"), t.vdi.int("virtual_size")
	data := bytes.Clone(t.vdi.sim.data)
	s.unlock()
	t.startBody(map[string]string{
		"Content-Type":        "application/octet-stream",
		"Content-Disposition": `attachment; filename="` + uuid + `.raw"`,
	})
	zeros := make([]byte, transferChunk)
	for off := int64(0); off < size; {
		chunk := zeros[:min(int64(len(zeros)), size-off)]
		if off < int64(len(data)) {
			chunk = data[off:min(int64(len(data)), off+int64(len(chunk)))]
		}
		if _, err := t.w.Write(chunk); err != nil {
			s.mu.Lock()
			s.failTask(t.task, errDeviceIO())
			s.unlock()
			return
		}
		off += int64(len(chunk))
		t.setProgress(off, size)
	}
	s.mu.Lock()
	s.completeTask(t.task, "")
	s.unlock()
}
