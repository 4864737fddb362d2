package xenapi

import (
	"bytes"
	"io"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xen-operator/xen-operator/internal/xapisim"
)

// BenchmarkEventFromDecode decodes full event.from batches of a simulated
// pool, the way kolo did (kolo_test.go) and streaming, both from a reader
// as from the HTTP body: n VMs running, each with a VBD, a VDI, a VIF and
// guest metrics (about 5n events, the objects stream of the watcher). peak-MiB is the most heap the decoding
// of one batch took, sampled, GC running as usual. "poolOf10000VMs" is the
// pool's hosts, SR and network alone, as a poll brings them with every VM
// that starts or gets a disk or a VIF: their fields listing the VMs, VDIs
// and VIFs are most of it, and no record keeps them.
func BenchmarkEventFromDecode(b *testing.B) {
	for _, tc := range []struct {
		name    string
		vms     int
		classes []string
	}{
		{"1000VMs", 1000, objectClasses},
		{"10000events", 2000, objectClasses},
		{"poolOf10000VMs", 10000, []string{ClassHost, ClassSR, ClassNetwork}},
	} {
		body := benchBatch(b, tc.vms, tc.classes)
		r := &rpc{endpoint: "sim"}
		for _, dec := range []struct {
			name   string
			decode func() (*eventBatch, error)
		}{
			{"kolo", func() (*eventBatch, error) {
				raw, err := io.ReadAll(io.LimitReader(bytes.NewReader(body), maxResponse))
				if err != nil {
					return nil, err
				}
				batch, _, err := koloEventFrom(r, raw)
				return batch, err
			}},
			{"stream", func() (*eventBatch, error) {
				batch := &eventBatch{}
				_, err := r.readResponse("event.from", io.LimitReader(bytes.NewReader(body), maxResponse), batch.decode)
				return batch, err
			}},
		} {
			b.Run(tc.name+"/"+dec.name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				var events int
				for b.Loop() {
					batch, err := dec.decode()
					if err != nil {
						b.Fatal(err)
					}
					events = len(batch.events)
				}
				b.ReportMetric(float64(events), "events")
				b.ReportMetric(peakHeap(b, dec.decode)/(1<<20), "peak-MiB")
			})
		}
	}
}

// benchBatch is the event.from response listing the objects of classes in
// a pool of n running VMs.
func benchBatch(b *testing.B, n int, classes []string) []byte {
	b.Helper()
	s := newSim(b, xapisim.Config{HostMemory: 1 << 50})
	if _, err := s.Brownfield(n, "Debian Bookworm 12", "bench", true); err != nil {
		b.Fatal(err)
	}
	return rawCall(b, s.URL(), "event.from", rawLogin(b, s.URL()), classes, "", 1.0)
}

// peakHeap samples the heap's objects while decode runs once and returns
// the most seen above what there was before, in bytes.
func peakHeap(b *testing.B, decode func() (*eventBatch, error)) float64 {
	b.Helper()
	sample := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 {
		rtmetrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	base := heap()
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			if h := heap(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	batch, err := decode()
	close(done)
	<-stopped
	if err != nil {
		b.Fatal(err)
	}
	if h := heap(); h > peak.Load() {
		peak.Store(h)
	}
	runtime.KeepAlive(batch)
	return float64(peak.Load() - min(base, peak.Load()))
}
