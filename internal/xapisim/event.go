package xapisim

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

func init() {
	explicitHandlers["event.from"] = explicit{fn: eventFrom}
	explicitHandlers["event.inject"] = explicit{fn: eventInject}
}

func fmtInt(i int64) string { return strconv.FormatInt(i, 10) }

// formatToken is xapi's event.from token: "%020d,%020d" (database
// generation, message generation).
func formatToken(gen uint64) string { return fmt.Sprintf("%020d,%020d", gen, 0) }

func parseToken(tok string) (uint64, bool, error) {
	if tok == "" {
		return 0, true, nil
	}
	db, _, ok := strings.Cut(tok, ",")
	gen, err := strconv.ParseUint(strings.TrimSpace(db), 10, 64)
	if !ok || err != nil {
		return 0, false, newFailure(errEventFromTokenParseFailure, tok)
	}
	return gen, false, nil
}

// subscription is the parsed classes parameter of event.from.
type subscription struct {
	all     bool
	classes map[string]bool   // datamodel class names
	objects map[string]string // ref -> class
}

func parseSubscription(classes []any) subscription {
	sub := subscription{classes: map[string]bool{}, objects: map[string]string{}}
	for _, v := range classes {
		c := strings.ToLower(v.(string))
		if c == "*" {
			sub.all = true
			continue
		}
		name, _, hasRef := strings.Cut(c, "/")
		class, ok := lowerClass[name]
		if !ok {
			continue
		}
		if hasRef {
			// Refs are case-sensitive: take the original spelling.
			_, orig, _ := strings.Cut(v.(string), "/")
			sub.objects[orig] = class
			continue
		}
		sub.classes[class] = true
	}
	return sub
}

func (sub subscription) wants(o *object) bool {
	if !o.class.events {
		return false
	}
	if sub.all || sub.classes[o.class.name] {
		return true
	}
	return sub.objects[o.ref] == o.class.name
}

func (sub subscription) wantsClass(class string) bool {
	if !model[class].events {
		return false
	}
	if sub.all || sub.classes[class] {
		return true
	}
	for _, c := range sub.objects {
		if c == class {
			return true
		}
	}
	return false
}

type pendingEvent struct {
	gen uint64
	ev  map[string]any
}

// collectEvents lists the changes after gen, one per object (changes to one
// object are coalesced into its latest state), in generation order.
func (s *Server) collectEvents(sub subscription, gen uint64, fromScratch bool) []pendingEvent {
	var out []pendingEvent
	for class, objs := range s.db.objects {
		if !sub.wantsClass(class) {
			continue
		}
		for _, o := range objs {
			if !sub.wants(o) || (!fromScratch && o.modified <= gen) {
				continue
			}
			op := "mod"
			if fromScratch || o.created > gen {
				op = "add"
			}
			out = append(out, pendingEvent{gen: o.modified, ev: map[string]any{
				"id": strconv.FormatUint(o.modified, 10), "timestamp": "0.0", "class": strings.ToLower(class),
				"operation": op, "ref": o.ref, "snapshot": recordOf(o),
			}})
		}
	}
	if !fromScratch {
		// Deletions are kept in generation order.
		i := sort.Search(len(s.db.deletions), func(i int) bool { return s.db.deletions[i].gen > gen })
		for _, d := range s.db.deletions[i:] {
			if !sub.wantsClass(d.class) || (!sub.all && !sub.classes[d.class] && sub.objects[d.ref] != d.class) {
				continue
			}
			out = append(out, pendingEvent{gen: d.gen, ev: map[string]any{
				"id": strconv.FormatUint(d.gen, 10), "timestamp": "0.0", "class": strings.ToLower(d.class),
				"operation": "del", "ref": d.ref,
			}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].gen < out[j].gen })
	return out
}

// eventBatchDelay is how long xapi waits after a change to batch more.
const eventBatchDelay = 50 * time.Millisecond

// eventFrom is event.from(classes, token, timeout): it returns the changes
// since token, blocking up to timeout seconds for the first one.
func eventFrom(c *callCtx) (any, error) {
	s := c.s
	sub := parseSubscription(c.args[0].([]any))
	gen, fromScratch, err := parseToken(c.str(1))
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(c.args[2].(float64) * float64(time.Second))
	deadline := time.Now().Add(timeout)
	waited := false
	for {
		if _, ok := s.db.get("session", c.session.ref); !ok {
			return nil, newFailure(errSessionInvalid, c.session.ref)
		}
		events := s.collectEvents(sub, gen, fromScratch)
		if len(events) > 0 && waited && !taskOnly(sub) {
			// Batch what follows closely, as xapi does.
			waited = false
			s.unlock()
			s.sleep(eventBatchDelay)
			s.mu.Lock()
			continue
		}
		remaining := time.Until(deadline)
		if len(events) > 0 || remaining <= 0 {
			return s.eventBatch(events), nil
		}
		changed := s.db.changed
		s.unlock()
		t := time.NewTimer(remaining)
		select {
		case <-changed:
		case <-t.C:
		case <-s.closed:
		case <-c.ctx.Done():
		}
		t.Stop()
		s.mu.Lock()
		waited = true
		select {
		case <-s.closed:
			return nil, newFailure(errInternalError, "xapi is shutting down")
		case <-c.ctx.Done():
			return nil, newFailure(errInternalError, "client went away")
		default:
		}
	}
}

func taskOnly(sub subscription) bool {
	return !sub.all && len(sub.objects) == 0 && len(sub.classes) == 1 && sub.classes["task"]
}

// eventBatch is event.from's result. valid_ref_counts counts the objects of
// every table of the database, whatever the subscription (xapi_event.ml
// from: a fold over the whole tableset); tables of classes the simulator
// does not model are empty.
func (s *Server) eventBatch(events []pendingEvent) map[string]any {
	evs := make([]any, len(events))
	for i, e := range events {
		evs[i] = e.ev
	}
	counts := make(map[string]any, len(datamodelTables))
	for _, class := range datamodelTables {
		counts[strings.ToLower(class)] = int32(min(len(s.db.objects[class]), math.MaxInt32)) //nolint:gosec // bounded above
	}
	return map[string]any{"events": evs, "valid_ref_counts": counts, "token": formatToken(s.db.gen)}
}

// eventInject is event.inject(class, ref): it returns a token after which
// event.from reports a mod of the object.
func eventInject(c *callCtx) (any, error) {
	class, ok := lowerClass[strings.ToLower(c.str(0))]
	if !ok {
		return nil, handleInvalid(c.str(0), c.str(1))
	}
	o, ok := c.s.db.get(class, c.str(1))
	if !ok {
		return nil, handleInvalid(c.str(0), c.str(1))
	}
	tok := formatToken(c.s.db.gen)
	c.s.db.touch(o)
	return tok, nil
}
