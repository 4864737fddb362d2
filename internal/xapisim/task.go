package xapisim

import (
	"sort"
	"time"
)

// maxTasks is xapi's cap on completed tasks kept (db_gc_util.ml).
const maxTasks = 200

func init() {
	explicitHandlers["task.cancel"] = explicit{fn: taskCancel, async: true}
	explicitHandlers["task.destroy"] = explicit{fn: taskDestroy}
}

// newTask creates a pending task named after the call.
func (s *Server) newTask(name string, session *object) *object {
	t := s.db.create("task", map[string]any{
		"name_label":         name,
		"name_description":   "",
		"allowed_operations": []any{"cancel"},
		"created":            time.Now().UTC(),
		"finished":           epoch,
		"status":             "pending",
		"resident_on":        s.coordinator().ref,
		"progress":           float64(0),
		"type":               "<none/>",
		"subtask_of":         nullRef,
	})
	t.sim.cancel = make(chan struct{})
	if session != nil {
		t.sim.session = session.ref
	}
	return t
}

// runAsync runs an Async call's implementation and completes its task.
func (s *Server) runAsync(m *method, c *callCtx) {
	defer s.wg.Done()
	s.mu.Lock()
	defer s.unlock()
	task := c.task
	value, err := m.handler(c)
	if _, alive := s.db.get("task", task.ref); !alive {
		return
	}
	now := time.Now().UTC()
	if err != nil {
		f := asFailure(err)
		status := "failure"
		if f.Code == errTaskCancelled {
			status = "cancelled"
		}
		s.db.update(task, "status", status, "progress", float64(1), "finished", now,
			"error_info", f.description(), "allowed_operations", []any{}, "current_operations", map[string]any{})
	} else {
		if m.result.kind == kVoid || value == nil {
			value = ""
		}
		s.db.update(task, "status", "success", "progress", float64(1), "finished", now,
			"result", xmlValueText(value), "allowed_operations", []any{}, "current_operations", map[string]any{})
	}
	if task.sim.destroyOnCompletion {
		s.db.destroy(task)
	}
	s.collectTasks()
}

// collectTasks destroys the oldest completed tasks beyond maxTasks, as
// xapi's database GC does.
func (s *Server) collectTasks() {
	var done []*object
	for _, t := range s.db.objects["task"] {
		if t.str("status") != "pending" {
			done = append(done, t)
		}
	}
	if len(done) <= maxTasks {
		return
	}
	sort.Slice(done, func(i, j int) bool { return done[i].modified < done[j].modified })
	for _, t := range done[:len(done)-maxTasks] {
		s.db.destroy(t)
	}
}

func taskCancel(c *callCtx) (any, error) {
	t, err := c.s.db.mustGet("task", c.str(0))
	if err != nil {
		return nil, err
	}
	if t.str("status") != "pending" {
		return nil, newFailure(errOperationNotAllowed, "task is not pending")
	}
	if cur := t.strMap("current_operations"); len(cur) == 0 {
		cur[c.operationTask().ref] = "cancel"
		c.s.cancelTask(t)
	}
	return nil, nil
}

// cancelTask makes a pending task's operation end with TASK_CANCELLED.
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

func taskDestroy(c *callCtx) (any, error) {
	t, err := c.s.db.mustGet("task", c.str(0))
	if err != nil {
		return nil, err
	}
	if t.str("status") == "pending" {
		t.sim.destroyOnCompletion = true
		return nil, nil
	}
	c.s.db.destroy(t)
	return nil, nil
}
