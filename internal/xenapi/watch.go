package xenapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"
)

// The classes the watcher follows, as event.from names them.
const (
	ClassVM           = "vm"
	ClassHost         = "host"
	ClassTask         = "task"
	ClassGuestMetrics = "vm_guest_metrics"
	ClassPool         = "pool"
	ClassSR           = "sr"
	ClassPBD          = "pbd"
	ClassVDI          = "vdi"
	ClassVBD          = "vbd"
	ClassVIF          = "vif"
	ClassNetwork      = "network"
)

// decoders decode an event's snapshot into the record of its class; the
// watcher subscribes to exactly these classes.
var decoders = map[string]snapshotDecoder{
	ClassVM:           snapshot((*vmWire).record),
	ClassHost:         snapshot((*hostWire).record),
	ClassTask:         snapshot((*taskWire).record),
	ClassGuestMetrics: snapshot((*guestMetricsWire).record),
	ClassPool:         snapshot((*poolWire).record),
	ClassSR:           snapshot((*srWire).record),
	ClassPBD:          snapshot((*pbdWire).record),
	ClassVDI:          snapshot((*vdiWire).record),
	ClassVBD:          snapshot((*vbdWire).record),
	ClassVIF:          snapshot((*vifWire).record),
	ClassNetwork:      snapshot((*networkWire).record),
}

// The watcher follows the classes in two event.from long polls. xapi sends
// an object's whole record with each of its events, and the records of a
// pool's hosts, SRs and networks list every VM, disk and interface they hold
// (host.resident_VMs, SR.VDIs, network.VIFs): each VM that starts, each disk
// or interface created, sends them again, ten thousand refs long in a big
// pool. In one stream an install would carry them in nearly every poll, a
// cost per poll that grows with the pool. So the pool-wide classes have a
// stream of their own, called at most once per poolStreamEvery; the VMs,
// their devices, their guests and the tasks are polled as fast as xapi
// answers.
var (
	poolClasses   = []string{ClassHost, ClassNetwork, ClassPBD, ClassPool, ClassSR}
	objectClasses = slices.DeleteFunc(slices.Sorted(maps.Keys(decoders)), func(c string) bool {
		return slices.Contains(poolClasses, c)
	})
	streams = []stream{{classes: objectClasses}, {classes: poolClasses, every: poolStreamEvery}}
)

// poolStreamEvery is how often at most the pool-wide classes are polled:
// a host, SR or network change reaches the cache within it.
const poolStreamEvery = time.Second

// stream is one event.from long poll: the classes it asks for, and how long
// at least from one call to the next (0: at once).
type stream struct {
	classes []string
	every   time.Duration
}

// snapshotDecoder decodes a snapshot, its <value> read, into the wire
// struct of its class, and returns what makes the record once the event's
// ref is known.
type snapshotDecoder func(s *scanner) (record func(ref string) any, err error)

func snapshot[W, R any](record func(*W, string) *R) snapshotDecoder {
	decode := decoderOf(reflect.TypeFor[W]())
	return func(s *scanner) (func(string) any, error) {
		w := new(W)
		if err := decode(s, reflect.ValueOf(w).Elem()); err != nil {
			return nil, err
		}
		return func(ref string) any { return record(w, ref) }, nil
	}
}

// EventOp is what happened to an object.
type EventOp string

// The event operations. A full resync (when the watcher starts, and after the
// stream was lost: xapi restarted, the connection broke) is delivered as
// OpResync, every object as OpAdd, then OpSynced: a subscriber may treat the
// objects it knows of that the resync did not mention as deleted.
//
// OpPolled ends the events of each event.from call, even one that returned
// none; its Time is when the call was made. xapi coalesces the changes to an
// object into its latest state, so an event cannot tell whether it is from
// before or after a write of this process; the poll can: once a subscriber
// has everything up to an OpPolled, it knows every object of the poll's
// classes as xapi had it after that Time, hence after every write that had
// returned by then.
//
// The watcher runs two polls (see streams): OpResync, OpSynced and OpPolled
// name the classes they are about (Classes, Covers). The events of one call
// come together, never mixed with another call's.
const (
	OpAdd    EventOp = "add"
	OpMod    EventOp = "mod"
	OpDel    EventOp = "del"
	OpResync EventOp = "resync"
	OpSynced EventOp = "synced"
	OpPolled EventOp = "polled"
)

// Event is a change to one object.
type Event struct {
	Class string
	Op    EventOp
	Ref   string
	// Object is the object's new state for add and mod, by Class: *VM, *Host,
	// *Task, *GuestMetrics, *PoolRecord, *SR, *PBD, *VDI, *VBD, *VIF or
	// *Network; nil for del.
	Object any
	// Time is, for OpResync, when the full sync was asked for: an object
	// created before then that the sync does not mention is gone. For
	// OpPolled, it is when the event.from call was made.
	Time time.Time
	// Classes are, for OpResync, OpSynced and OpPolled, the classes of the
	// event.from call: those the full sync or the poll is about.
	Classes []string
}

// Covers tells whether an OpResync, OpSynced or OpPolled is about a class;
// one that names no classes is about all of them.
func (e Event) Covers(class string) bool {
	return e.Classes == nil || slices.Contains(e.Classes, class)
}

// VM is the event's VM, nil for other classes and deletions.
func (e Event) VM() *VM { v, _ := e.Object.(*VM); return v }

// Task is the event's task, nil for other classes and deletions.
func (e Event) Task() *Task { t, _ := e.Object.(*Task); return t }

// Subscription receives the watcher's events in order, without ever
// slowing the watcher down: events queue until read.
type Subscription struct {
	w      *watcher
	mu     sync.Mutex
	queue  []Event
	signal chan struct{}
	out    chan Event
	done   chan struct{}
	once   sync.Once
}

// Events is the channel of events.
func (s *Subscription) Events() <-chan Event { return s.out }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.once.Do(func() {
		close(s.done)
		s.w.unsubscribe(s)
	})
}

func (s *Subscription) push(evs []Event) {
	s.mu.Lock()
	s.queue = append(s.queue, evs...)
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *Subscription) pump() {
	defer close(s.out)
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, e := range batch {
			select {
			case s.out <- e:
			case <-s.done:
				return
			}
		}
		select {
		case <-s.signal:
		case <-s.done:
			return
		}
	}
}

// watcher runs the event.from long polls of a client (streams).
type watcher struct {
	c      *Client
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	subs  map[*Subscription]struct{}
	tasks taskWaiters
	// lastErr is, per stream, the error of its last event.from call, nil
	// once one succeeds; polled tells whether one returned.
	lastErr []error
	polled  []bool
}

// ErrNotWatching is WatchHealth's answer before the first event.from returned.
var ErrNotWatching = errors.New("xenapi: the event stream has not answered yet")

// WatchHealth tells whether the client's event streams work: nil when the
// last event.from of each succeeded, the last error otherwise. It makes no
// call.
func (c *Client) WatchHealth() error {
	c.mu.Lock()
	w := c.watcher
	c.mu.Unlock()
	if w == nil {
		return ErrNotWatching
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, err := range w.lastErr {
		if !w.polled[i] {
			return ErrNotWatching
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *watcher) setHealth(stream int, err error) {
	w.mu.Lock()
	w.lastErr[stream], w.polled[stream] = err, true
	w.mu.Unlock()
}

// Subscribe starts the client's watcher if needed and returns a
// subscription to its events. The first events are a full sync: every
// object as OpAdd between OpResync and OpSynced.
func (c *Client) Subscribe() (*Subscription, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.watcher == nil {
		ctx, cancel := context.WithCancel(context.Background())
		c.watcher = &watcher{c: c, cancel: cancel, done: make(chan struct{}), subs: map[*Subscription]struct{}{},
			tasks: taskWaiters{waiting: map[string]chan *Task{}, completed: map[string]*Task{},
				begun: map[string]struct{}{}, seen: map[string]struct{}{}},
			lastErr: make([]error, len(streams)), polled: make([]bool, len(streams))}
		go c.watcher.run(ctx)
	}
	w := c.watcher
	c.mu.Unlock()
	s := &Subscription{w: w, signal: make(chan struct{}, 1), out: make(chan Event), done: make(chan struct{})}
	w.mu.Lock()
	w.subs[s] = struct{}{}
	w.mu.Unlock()
	go s.pump()
	return s, nil
}

func (w *watcher) unsubscribe(s *Subscription) {
	w.mu.Lock()
	delete(w.subs, s)
	w.mu.Unlock()
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
	w.mu.Lock()
	for s := range w.subs {
		s.once.Do(func() { close(s.done) })
	}
	w.subs = map[*Subscription]struct{}{}
	w.mu.Unlock()
}

func (w *watcher) deliver(evs []Event) {
	if len(evs) == 0 {
		return
	}
	w.mu.Lock()
	ended := w.observeTasks(evs)
	for _, ref := range ended {
		delete(w.tasks.begun, ref)
	}
	for s := range w.subs {
		s.push(evs)
	}
	w.mu.Unlock()
	for range ended {
		w.c.release()
	}
}

// run polls each stream until stopped.
func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	var wg sync.WaitGroup
	for i, st := range streams {
		wg.Go(func() { w.poll(ctx, i, st) })
	}
	wg.Wait()
}

// poll calls event.from for a stream's classes until stopped. A connection
// failure (xapi gone or restarting) ends in a full resync from an empty
// token once xapi answers again; SESSION_INVALID is handled by a new login
// and the poll resumes from its token.
func (w *watcher) poll(ctx context.Context, stream int, st stream) {
	token := ""
	backoff := time.Second
	var asked time.Time
	for ctx.Err() == nil {
		if wait := st.every - time.Since(asked); !asked.IsZero() && wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
		}
		asked = time.Now()
		batch, err := w.c.eventFrom(ctx, st.classes, token)
		if ctx.Err() != nil {
			return
		}
		w.setHealth(stream, err)
		if err != nil {
			if !IsConnectionError(err) && codeOf(err) == "EVENT_FROM_TOKEN_PARSE_FAILURE" {
				token = ""
				continue
			}
			if IsConnectionError(err) {
				token = "" // xapi may have restarted: resync everything
			}
			w.c.log.Info("XenAPI event stream interrupted", "error", err.Error(), "retryIn", backoff.String())
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		evs := batch.events
		if token == "" {
			evs = append(append([]Event{{Op: OpResync, Time: asked, Classes: st.classes}}, evs...),
				Event{Op: OpSynced, Classes: st.classes})
		}
		evs = append(evs, Event{Op: OpPolled, Time: asked, Classes: st.classes})
		token = batch.token
		w.deliver(evs)
	}
}

type eventBatch struct {
	events []Event
	token  string
}

// eventFrom makes one event.from call and decodes each event's snapshot
// into the record of its class as the response is read.
func (c *Client) eventFrom(ctx context.Context, classes []string, token string) (*eventBatch, error) {
	timeout := c.sessions.opts.EventTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout+c.sessions.opts.DialTimeout+30*time.Second)
	defer cancel()
	batch := &eventBatch{}
	err := doWith(ctx, c, "event.from", func(s *scanner) error {
		batch = &eventBatch{}
		return batch.decode(s)
	}, classes, token, timeout.Seconds())
	if err != nil {
		return nil, err
	}
	return batch, nil
}

// decode reads event.from's result, its <value> read.
func (b *eventBatch) decode(s *scanner) error {
	k, err := s.open()
	if err != nil {
		return err
	}
	if k != valStruct {
		return s.mismatch(k, "an event batch")
	}
	for {
		ok, err := s.member()
		if err != nil || !ok {
			return err
		}
		switch string(s.mname) {
		case "events":
			err = b.decodeEvents(s)
		case "token":
			b.token, err = s.str()
		default: // valid_ref_counts
			err = s.skip()
		}
		if err == nil {
			err = s.endMember()
		}
		if err != nil {
			return err
		}
	}
}

func (b *eventBatch) decodeEvents(s *scanner) error {
	k, err := s.open()
	switch {
	case err != nil:
		return err
	case k == valEmptyArray:
		return nil
	case k != valArray:
		return s.mismatch(k, "a list of events")
	}
	for {
		ok, err := s.elem()
		if err != nil || !ok {
			return err
		}
		ev, err := decodeEvent(s)
		if err != nil {
			return fmt.Errorf("event %d: %w", len(b.events), err)
		}
		b.events = append(b.events, ev)
	}
}

// decodeEvent reads an event, its <value> read. The snapshot is decoded as
// it is read when the class came before it, as xapi sends them; otherwise
// (struct members have no order) it is kept raw until the end of the event.
// A deletion, or an event of a class not watched, has no object.
func decodeEvent(s *scanner) (Event, error) {
	var ev Event
	k, err := s.open()
	if err != nil {
		return ev, err
	}
	if k != valStruct {
		return ev, s.mismatch(k, "an event")
	}
	var (
		classSeen bool
		record    func(string) any
		raw       []byte
	)
	for {
		ok, err := s.member()
		if err != nil {
			return ev, err
		}
		if !ok {
			break
		}
		switch string(s.mname) {
		case "class":
			ev.Class, err = s.str()
			classSeen = true
		case "operation":
			var op string
			op, err = s.str()
			ev.Op = EventOp(op)
		case "ref":
			ev.Ref, err = s.str()
		case "snapshot":
			switch decode := decoders[ev.Class]; {
			case !classSeen:
				raw, err = s.capture()
			case decode == nil || ev.Op == OpDel:
				err = s.skip()
			default:
				if record, err = decode(s); err != nil {
					err = fmt.Errorf("the snapshot of %s %s: %w", ev.Class, ev.Ref, err)
				}
			}
		default: // id, timestamp
			err = s.skip()
		}
		if err == nil {
			err = s.endMember()
		}
		if err != nil {
			return ev, err
		}
	}
	decode := decoders[ev.Class]
	if decode == nil || ev.Op == OpDel {
		return ev, nil
	}
	if raw != nil {
		rs := newBytesScanner(raw)
		if err := rs.expect(tokStart, "value"); err != nil {
			return ev, err
		}
		if record, err = decode(rs); err != nil {
			return ev, fmt.Errorf("the snapshot of %s %s: %w", ev.Class, ev.Ref, err)
		}
	}
	if record != nil {
		ev.Object = record(ev.Ref)
	}
	return ev, nil
}
