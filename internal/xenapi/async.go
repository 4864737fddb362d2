package xenapi

import (
	"context"
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

// observeTasks hands finished tasks to their waiters. Called with w.mu held.
func (w *watcher) observeTasks(evs []Event) {
	for _, e := range evs {
		if e.Class != ClassTask {
			continue
		}
		var done *Task
		switch {
		case e.Op == OpDel:
		case e.Task != nil && e.Task.Status != TaskPending:
			done = e.Task
		default:
			continue
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

	poll := time.NewTicker(c.pool.opts.TaskPollInterval)
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
	switch task.Status {
	case TaskSuccess:
		return decodeValueText[T](task.Result)
	case TaskCancelled:
		return zero, &Error{Method: method, Code: CodeTaskCancelled, Params: []string{ref}}
	default:
		xe := &Error{Method: method, Code: "INTERNAL_ERROR"}
		if len(task.ErrorInfo) > 0 {
			xe.Code, xe.Params = task.ErrorInfo[0], task.ErrorInfo[1:]
		}
		return zero, xe
	}
}
