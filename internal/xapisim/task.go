package xapisim

import (
	"time"
)

// maxTasks is xapi's cap on the tasks its database GC keeps (xapi_globs.ml).
const maxTasks = 200

// Task messages have no Async form (datamodel.ml no_async_messages_for).
func init() {
	explicitHandlers["task.create"] = explicit{fn: taskCreate}
	explicitHandlers["task.cancel"] = explicit{fn: taskCancel}
	explicitHandlers["task.destroy"] = explicit{fn: taskDestroy}
}

// newTask creates a pending task named after the call, as taskHelper.ml make
// does: not cancellable until an operation says so, an empty backtrace
// ("()"), in the session's tasks.
func (s *Server) newTask(name string, session *object) *object {
	t := s.db.create("task", map[string]any{
		"name_label":         name,
		"name_description":   "",
		"allowed_operations": []any{},
		"current_operations": map[string]any{},
		"created":            now(),
		"finished":           epoch,
		"status":             "pending",
		"resident_on":        s.coordinator().ref,
		"progress":           float64(0),
		"type":               "<none/>",
		"result":             "",
		"error_info":         []any{},
		"other_config":       map[string]any{},
		"subtask_of":         nullRef,
		"backtrace":          "()",
	})
	t.sim.cancel = make(chan struct{})
	if session != nil {
		t.sim.session = session.ref
		s.db.refSetAdd(session, "tasks", t.ref)
	}
	return t
}

// runAsync runs an Async call's implementation and completes its task as
// taskHelper.ml complete and failed do: progress 1, finished, not
// cancellable, the result as XML-RPC text or the error; current_operations
// are left as they are.
func (s *Server) runAsync(m *method, c *callCtx) {
	defer s.wg.Done()
	s.mu.Lock()
	defer s.unlock()
	task := c.task
	value, err := m.handler(c)
	if _, alive := s.db.get("task", task.ref); !alive || task.str("status") != "pending" {
		return
	}
	if err != nil {
		f := asFailure(err)
		status := "failure"
		if f.Code == errTaskCancelled {
			status = "cancelled"
		}
		s.db.update(task, "progress", float64(1), "error_info", f.description(), "finished", now(),
			"allowed_operations", []any{}, "status", status)
		return
	}
	if m.result.kind == kVoid || value == nil {
		value = ""
	}
	s.db.update(task, "allowed_operations", []any{}, "finished", now(), "progress", float64(1),
		"result", xmlValueText(value), "status", "success")
}

// taskCreate is task.create (xapi_task.ml create): a new pending task in
// the caller's session, named label, described description, as
// taskHelper.ml make creates every task (the caller's own task is a dummy,
// so subtask_of stays null). Clients create one to follow an HTTP transfer
// (task_id).
func taskCreate(c *callCtx) (any, error) {
	t := c.s.newTask(c.str(0), c.session)
	c.s.db.update(t, "name_description", c.str(1))
	return t.ref, nil
}

// taskCancel is task.cancel (xapi_task.ml cancel): it records the request in
// the task's current_operations, whatever the task's state, and the
// operation ends with TASK_CANCELLED if it checks for cancellation.
func taskCancel(c *callCtx) (any, error) {
	t, err := c.s.db.mustGet("task", c.str(0))
	if err != nil {
		return nil, err
	}
	c.s.db.update(t, "current_operations", map[string]any{c.operationTask().ref: "cancel"})
	if t.str("status") == "pending" {
		c.s.cancelTask(t)
	}
	return nil, nil
}

// cancelTask signals a pending task's operation to stop.
func (s *Server) cancelTask(t *object) {
	if t.sim.cancel == nil {
		return
	}
	select {
	case <-t.sim.cancel:
	default:
		close(t.sim.cancel)
		s.db.touch(t)
	}
}

// taskDestroy is task.destroy (xapi_task.ml destroy): a completed task goes
// at once; a pending one is marked {"task": "destroy"} and the database GC
// destroys it once it has completed.
func taskDestroy(c *callCtx) (any, error) {
	t, err := c.s.db.mustGet("task", c.str(0))
	if err != nil {
		return nil, err
	}
	if t.str("status") == "pending" {
		t.strMap("current_operations")["task"] = "destroy"
		c.s.db.touch(t)
		return nil, nil
	}
	c.s.db.destroy(t)
	return nil, nil
}

// timeoutTasks is db_gc_util.ml timeout_tasks: completed tasks marked for
// destruction go; so do completed tasks that finished more than
// CompletedTaskTimeout ago, and pending ones created more than
// PendingTaskTimeout ago whose progress has not moved since the previous
// pass. If more than maxTasks remain, only the most recently finished
// maxTasks − (number of completed tasks) completed ones are kept: xapi
// subtracts the completed count, not the pending one, so with maxTasks or
// more completed tasks every completed task goes.
func (s *Server) timeoutTasks(at time.Time) {
	var completed, pending []*object
	for _, t := range s.db.all("task") {
		if t.str("status") == "pending" {
			pending = append(pending, t)
		} else {
			completed = append(completed, t)
		}
	}
	var young []*object
	for _, t := range completed {
		switch {
		case markedForDestroy(t):
			s.db.destroy(t)
		case t.fields["finished"].(time.Time).Before(at.Add(-s.cfg.CompletedTaskTimeout)):
			s.db.destroy(t)
		default:
			young = append(young, t)
		}
	}
	probation := map[string]float64{}
	for _, t := range pending {
		old := t.fields["created"].(time.Time).Before(at.Add(-s.cfg.PendingTaskTimeout))
		if !old {
			young = append(young, t)
			continue
		}
		probation[t.ref] = t.fields["progress"].(float64)
		if before, seen := s.probation[t.ref]; seen && t.fields["progress"].(float64)-before <= 0 {
			s.db.destroy(t) // hung: no progress since the last pass
			continue
		}
		young = append(young, t)
	}
	s.probation = probation
	if len(young) <= maxTasks {
		return
	}
	var youngCompleted []*object
	for _, t := range young {
		if t.str("status") != "pending" {
			youngCompleted = append(youngCompleted, t)
		}
	}
	limit := maxTasks - len(youngCompleted)
	if len(youngCompleted) <= limit {
		return
	}
	sortBy(youngCompleted, func(a, b *object) bool {
		return a.fields["finished"].(time.Time).After(b.fields["finished"].(time.Time))
	})
	for _, t := range youngCompleted[max(limit, 0):] {
		s.db.destroy(t)
	}
}

// markedForDestroy tells whether task.destroy was called on t while it was
// pending.
func markedForDestroy(t *object) bool {
	for _, op := range t.strMap("current_operations") {
		if op == "destroy" {
			return true
		}
	}
	return false
}
