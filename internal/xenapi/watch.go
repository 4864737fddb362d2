package xenapi

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
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

// decoders turn an event's snapshot into the record of its class; the
// watcher subscribes to exactly these classes.
var decoders = map[string]func(raw, ref string) (any, error){
	ClassVM:           decoder((*vmWire).record),
	ClassHost:         decoder((*hostWire).record),
	ClassTask:         decoder((*taskWire).record),
	ClassGuestMetrics: decoder((*guestMetricsWire).record),
	ClassPool:         decoder((*poolWire).record),
	ClassSR:           decoder((*srWire).record),
	ClassPBD:          decoder((*pbdWire).record),
	ClassVDI:          decoder((*vdiWire).record),
	ClassVBD:          decoder((*vbdWire).record),
	ClassVIF:          decoder((*vifWire).record),
	ClassNetwork:      decoder((*networkWire).record),
}

var watchedClasses = slices.Sorted(maps.Keys(decoders))

func decoder[W, R any](record func(*W, string) *R) func(raw, ref string) (any, error) {
	return func(raw, ref string) (any, error) {
		w, err := decodeValueText[W](raw)
		if err != nil {
			return nil, err
		}
		return record(&w, ref), nil
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
// has everything up to an OpPolled, it knows every object as xapi had it
// after that Time, hence after every write that had returned by then.
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

// watcher runs one event.from long poll for a client.
type watcher struct {
	c      *Client
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	subs  map[*Subscription]struct{}
	tasks taskWaiters
	// lastErr is the error of the last event.from call, nil once one succeeds.
	lastErr error
	polled  bool
}

// ErrNotWatching is WatchHealth's answer before the first event.from returned.
var ErrNotWatching = errors.New("xenapi: the event stream has not answered yet")

// WatchHealth tells whether the client's event stream works: nil after a
// successful event.from, the last error otherwise. It makes no call.
func (c *Client) WatchHealth() error {
	c.mu.Lock()
	w := c.watcher
	c.mu.Unlock()
	if w == nil {
		return ErrNotWatching
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.polled {
		return ErrNotWatching
	}
	return w.lastErr
}

func (w *watcher) setHealth(err error) {
	w.mu.Lock()
	w.lastErr, w.polled = err, true
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
				begun: map[string]struct{}{}, seen: map[string]struct{}{}}}
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

// run polls event.from until stopped. A connection failure (xapi gone or
// restarting) ends in a full resync from an empty token once xapi answers
// again; SESSION_INVALID is handled by a new login and the poll resumes from
// its token.
func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	token := ""
	backoff := time.Second
	for ctx.Err() == nil {
		asked := time.Now()
		batch, err := w.c.eventFrom(ctx, token)
		if ctx.Err() != nil {
			return
		}
		w.setHealth(err)
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
			evs = append(append([]Event{{Op: OpResync, Time: asked}}, evs...), Event{Op: OpSynced})
		}
		evs = append(evs, Event{Op: OpPolled, Time: asked})
		token = batch.token
		w.deliver(evs)
	}
}

type eventBatch struct {
	events []Event
	token  string
}

type eventWire struct {
	ID        string `xmlrpc:"id"`
	Class     string `xmlrpc:"class"`
	Operation string `xmlrpc:"operation"`
	Ref       string `xmlrpc:"ref"`
}

type eventBatchWire struct {
	Events         []eventWire    `xmlrpc:"events"`
	ValidRefCounts map[string]int `xmlrpc:"valid_ref_counts"`
	Token          string         `xmlrpc:"token"`
}

// eventFrom makes one event.from call and decodes each event's snapshot
// into the record of its class.
func (c *Client) eventFrom(ctx context.Context, token string) (*eventBatch, error) {
	timeout := c.sessions.opts.EventTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout+c.sessions.opts.DialTimeout+30*time.Second)
	defer cancel()
	var body []byte
	wire, err := doBody[eventBatchWire](ctx, c, &body, "event.from", watchedClasses, token, timeout.Seconds())
	if err != nil {
		return nil, err
	}
	snaps, err := snapshots(body)
	if err != nil || len(snaps) != len(wire.Events) {
		return nil, &ConnectionError{Endpoint: c.rpc.endpoint, Err: fmt.Errorf("event.from: cannot read the snapshots: %v", err)}
	}
	out := &eventBatch{token: wire.Token}
	for i, e := range wire.Events {
		ev := Event{Class: e.Class, Op: EventOp(e.Operation), Ref: e.Ref}
		if decode := decoders[e.Class]; decode != nil && ev.Op != OpDel && snaps[i] != nil {
			if ev.Object, err = decode(string(snaps[i]), e.Ref); err != nil {
				return nil, &ConnectionError{Endpoint: c.rpc.endpoint, Err: fmt.Errorf("event.from: %s %s: %w", e.Class, e.Ref, err)}
			}
		}
		out.events = append(out.events, ev)
	}
	return out, nil
}

// snapshots returns, for each event of an event.from response in order, the
// raw XML of its snapshot <value> (nil for a del). kolo cannot decode a
// struct whose type depends on a sibling member, so the snapshots are cut
// out and decoded one by one into the record of their class.
func snapshots(body []byte) ([][]byte, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	next := func() (xml.Token, error) {
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			if cd, ok := tok.(xml.CharData); ok && len(bytes.TrimSpace(cd)) == 0 {
				continue
			}
			return tok, nil
		}
	}
	expectStart := func(name string) error {
		tok, err := next()
		if err != nil {
			return err
		}
		if se, ok := tok.(xml.StartElement); !ok || se.Name.Local != name {
			return fmt.Errorf("expected <%s>, got %v", name, tok)
		}
		return nil
	}
	// Find the "events" member of the Value struct.
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "name" {
			var name string
			if err := d.DecodeElement(&name, &se); err != nil {
				return nil, err
			}
			if name == "events" {
				break
			}
		}
	}
	for _, n := range []string{"value", "array", "data"} {
		if err := expectStart(n); err != nil {
			return nil, err
		}
	}
	var out [][]byte
	for {
		tok, err := next()
		if err != nil {
			return nil, err
		}
		if _, ok := tok.(xml.EndElement); ok { // </data>
			return out, nil
		}
		if err := expectStart("struct"); err != nil {
			return nil, err
		}
		var snap []byte
		for {
			tok, err := next()
			if err != nil {
				return nil, err
			}
			if _, ok := tok.(xml.EndElement); ok { // </struct>
				break
			}
			var name string
			tok, err = next()
			if err != nil {
				return nil, err
			}
			se, ok := tok.(xml.StartElement)
			if !ok || se.Name.Local != "name" {
				return nil, errors.New("expected <name>")
			}
			if err := d.DecodeElement(&name, &se); err != nil {
				return nil, err
			}
			start := d.InputOffset()
			if err := expectStart("value"); err != nil {
				return nil, err
			}
			if err := d.Skip(); err != nil {
				return nil, err
			}
			if name == "snapshot" {
				snap = bytes.TrimSpace(body[start:d.InputOffset()])
			}
			if _, err := next(); err != nil { // </member>
				return nil, err
			}
		}
		if _, err := next(); err != nil { // </value>
			return nil, err
		}
		out = append(out, snap)
	}
}
