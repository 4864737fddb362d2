package xenapi

import (
	"context"
	"strings"
	"time"
)

// completedTaskMemory bounds the finished tasks the watcher remembers for
// waiters that register after the task's last event.
const completedTaskMemory = 1024

// taskWaiters lets Async wait for a task through the event stream.
type taskWaiters struct {
	waiting   map[string]chan *Task
	completed map[string]*Task
	order     []string
	// begun are the tasks started with Begin that hold an operation slot.
	begun map[string]struct{}
	// seen collects the tasks of a full resync, from its OpResync on.
	seen map[string]struct{}
}

// waitTask returns a channel that receives the task once it is no longer
// pending (nil if xapi deleted it first).
func (w *watcher) waitTask(ref string) (<-chan *Task, func()) {
	ch := make(chan *Task, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.tasks.completed[ref]; ok {
		ch <- t
		return ch, func() {}
	}
	w.tasks.waiting[ref] = ch
	return ch, func() {
		w.mu.Lock()
		delete(w.tasks.waiting, ref)
		w.mu.Unlock()
	}
}

// observeTasks hands finished tasks to their waiters and returns the begun
// tasks that ended, whose slots are to be given back. Called with w.mu held.
func (w *watcher) observeTasks(evs []Event) []string {
	var ended []string
	for _, e := range evs {
		if (e.Op == OpResync || e.Op == OpSynced) && !e.Covers(ClassTask) {
			continue // the pool-wide stream's
		}
		if e.Op == OpResync {
			w.tasks.seen = map[string]struct{}{}
			continue
		}
		if e.Op == OpSynced {
			// Begun tasks a full resync did not mention are gone.
			for ref := range w.tasks.begun {
				if _, ok := w.tasks.seen[ref]; !ok {
					ended = append(ended, ref)
				}
			}
			w.tasks.seen = map[string]struct{}{}
			continue
		}
		if e.Class != ClassTask {
			continue
		}
		if e.Op != OpDel {
			w.tasks.seen[e.Ref] = struct{}{}
		}
		var done *Task
		switch {
		case e.Op == OpDel:
		case e.Task() != nil && e.Task().Status != TaskPending:
			done = e.Task()
		default:
			continue
		}
		if _, ok := w.tasks.begun[e.Ref]; ok {
			ended = append(ended, e.Ref)
		}
		if ch, ok := w.tasks.waiting[e.Ref]; ok {
			ch <- done
			delete(w.tasks.waiting, e.Ref)
			continue
		}
		if done != nil {
			if _, seen := w.tasks.completed[e.Ref]; !seen {
				w.tasks.order = append(w.tasks.order, e.Ref)
			}
			w.tasks.completed[e.Ref] = done
			for len(w.tasks.order) > completedTaskMemory {
				delete(w.tasks.completed, w.tasks.order[0])
				w.tasks.order = w.tasks.order[1:]
			}
		}
	}
	return ended
}

// ensureWatcher starts the client's event watcher if it is not running.
func (c *Client) ensureWatcher() (*watcher, error) {
	s, err := c.Subscribe()
	if err != nil {
		return nil, err
	}
	s.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watcher, nil
}

// Async runs Async.<method>: it starts the task, waits for it through the
// event stream (polling task.get_record when no event comes), returns its
// typed result or its error, and destroys the task. If xapi collected the
// task before its result was read, the error is ErrTaskCollected: look at
// the object again. The call holds one of the endpoint's mutation slots
// until the task ends.
func Async[T any](ctx context.Context, c *Client, method string, args ...any) (T, error) {
	var zero T
	if err := c.acquire(ctx); err != nil {
		return zero, err
	}
	defer c.release()
	w, err := c.ensureWatcher()
	if err != nil {
		return zero, err
	}
	ref, err := do[string](ctx, c, "Async."+method, args...)
	if err != nil {
		return zero, err
	}
	done, stopWaiting := w.waitTask(ref)
	defer stopWaiting()
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := do[string](dctx, c, "task.destroy", ref); err != nil && !IsHandleInvalid(err) {
			c.log.V(1).Info("Destroying a task failed", "method", method, "error", err.Error())
		}
	}()

	poll := time.NewTicker(c.sessions.opts.TaskPollInterval)
	defer poll.Stop()
	var task *Task
	for task == nil {
		select {
		case t := <-done:
			if t == nil {
				return zero, ErrTaskCollected
			}
			task = t
		case <-poll.C:
			t, err := c.Task(ctx, ref)
			switch {
			case IsHandleInvalid(err):
				return zero, ErrTaskCollected
			case err != nil:
				c.log.V(1).Info("Polling a task failed", "method", method, "error", err.Error())
			case t.Status != TaskPending:
				task = t
			}
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
	if err := taskError(task); err != nil {
		return zero, err
	}
	return decodeValueText[T](task.Result)
}

// Begin starts Async.<method> and returns its task without waiting: the
// caller follows the task (Task, or the event stream) and calls Finish once
// it is no longer pending. The endpoint's operation slot taken here is given
// back when the task ends, whether or not Finish is called.
func (c *Client) Begin(ctx context.Context, method string, args ...any) (string, error) {
	if err := c.acquire(ctx); err != nil {
		return "", err
	}
	w, err := c.ensureWatcher()
	if err != nil {
		c.release()
		return "", err
	}
	ref, err := do[string](ctx, c, "Async."+method, args...)
	if err != nil {
		c.release()
		return "", err
	}
	w.mu.Lock()
	_, done := w.tasks.completed[ref]
	if !done {
		w.tasks.begun[ref] = struct{}{}
	}
	w.mu.Unlock()
	if done {
		c.release()
	}
	return ref, nil
}

// Finish destroys a task begun with Begin and returns its outcome: nil on
// success, the task's XenAPI error, or ErrTaskCollected when xapi no longer
// knows the task.
func (c *Client) Finish(ctx context.Context, t *Task) error {
	c.endTask(t.Ref)
	if _, err := do[string](ctx, c, "task.destroy", t.Ref); err != nil && !IsHandleInvalid(err) {
		c.log.V(1).Info("Destroying a task failed", "task", t.NameLabel, "error", err.Error())
	}
	return taskError(t)
}

// taskError is a finished task's outcome as an error.
func taskError(t *Task) error {
	method := strings.TrimPrefix(t.NameLabel, "Async.")
	switch t.Status {
	case TaskSuccess:
		return nil
	case TaskCancelled:
		return &Error{Method: method, Code: CodeTaskCancelled, Params: []string{t.Ref}}
	default:
		xe := &Error{Method: method, Code: "INTERNAL_ERROR"}
		if len(t.ErrorInfo) > 0 {
			xe.Code, xe.Params = t.ErrorInfo[0], t.ErrorInfo[1:]
		}
		return xe
	}
}

// endTask gives back the slot of a task begun with Begin, once.
func (c *Client) endTask(ref string) {
	c.mu.Lock()
	w := c.watcher
	c.mu.Unlock()
	if w == nil {
		return
	}
	w.mu.Lock()
	_, begun := w.tasks.begun[ref]
	delete(w.tasks.begun, ref)
	w.mu.Unlock()
	if begun {
		c.release()
	}
}
