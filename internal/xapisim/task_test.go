package xapisim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestTasks(t *testing.T) {
	s := newSim(t, Config{GCInterval: time.Hour, OpDurations: map[string]time.Duration{"clone": 300 * time.Millisecond, "start": 300 * time.Millisecond}})
	c := newClient(t, s.URL()).login()
	tmpl := c.vmByName("Debian Bookworm 12")

	t.Run("an Async call returns a pending task that succeeds with an XML-RPC result", func(t *testing.T) {
		g := NewWithT(t)
		task := c.must("Async.VM.clone", tmpl, "async-clone").(string)
		rec := c.must("task.get_record", task).(map[string]any)
		g.Expect(rec).To(HaveKeyWithValue("status", "pending"))
		g.Expect(rec).To(HaveKeyWithValue("name_label", "Async.VM.clone"))
		g.Expect(rec).To(HaveKeyWithValue("progress", BeNumerically("==", 0)))
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("success"))
		rec = c.must("task.get_record", task).(map[string]any)
		g.Expect(rec["result"]).To(MatchRegexp(`^<value>OpaqueRef:[0-9a-f-]{36}</value>$`))
		g.Expect(rec["progress"]).To(BeNumerically("==", 1))
		g.Expect(rec["finished"]).NotTo(Equal(xmlDate("19700101T00:00:00Z")))
		c.must("task.destroy", task)
		_, f := c.do("task.get_record", task)
		g.Expect(f).To(failWith(errHandleInvalid, "task", task))
	})
	t.Run("a task is what taskHelper.ml make creates", func(t *testing.T) {
		g := NewWithT(t)
		host := c.must("host.get_all").([]any)[0].(string)
		task := c.must("Async.host.compute_free_memory", host).(string)
		rec := c.must("task.get_record", task).(map[string]any)
		g.Expect(rec).To(HaveKeyWithValue("name_label", "Async.host.compute_free_memory"))
		g.Expect(rec).To(HaveKeyWithValue("allowed_operations", []any{}), "not cancellable unless an operation says so")
		g.Expect(rec).To(HaveKeyWithValue("type", "<none/>"))
		g.Expect(rec).To(HaveKeyWithValue("backtrace", "()"), "the empty backtrace's S-expression")
		g.Expect(rec).To(HaveKeyWithValue("resident_on", host))
		g.Expect(rec).To(HaveKeyWithValue("subtask_of", nullRef))
		g.Expect(rec).To(HaveKeyWithValue("other_config", map[string]any{}))
		g.Expect(c.must("session.get_tasks", c.session)).To(ContainElement(task), "the session lists the tasks it created")
		// A pending task is only marked for destruction: wait for it to end.
		g.Eventually(func() any { return c.field("task", task, "status") }, 5*time.Second).Should(Equal("success"))
		c.must("task.destroy", task)
		g.Expect(c.must("session.get_tasks", c.session)).NotTo(ContainElement(task))
	})
	t.Run("a failing Async call records error_info", func(t *testing.T) {
		g := NewWithT(t)
		task := c.must("Async.VM.start", tmpl, false, false).(string)
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("failure"))
		g.Expect(c.field("task", task, "error_info")).To(Equal([]any{errVMIsTemplate, tmpl, "start"}))
	})
	t.Run("a void result is an empty value", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "void")
		task := c.must("Async.VM.start", vm, false, false).(string)
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("success"))
		g.Expect(c.field("task", task, "result")).To(Equal("<value></value>"))
	})
	t.Run("cancelling an operation that checks for it", func(t *testing.T) {
		// xenopsd ends a cancelled VM.start with TASK_CANCELLED (XENAPI.md §11).
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "cancelled-start")
		task := c.must("Async.VM.start", vm, false, false).(string)
		g.Eventually(func() any { return c.field("task", task, "allowed_operations") }).Should(Equal([]any{"cancel"}),
			"a VM operation makes its task cancellable once it runs")
		c.must("task.cancel", task)
		g.Expect(c.field("task", task, "current_operations")).To(HaveLen(1), "the cancel request is recorded")
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("cancelled"))
		g.Expect(c.field("task", task, "error_info")).To(Equal([]any{errTaskCancelled, task}))
		g.Expect(c.field("VM", vm, "power_state")).To(Equal("Halted"))
	})
	t.Run("a cancel that the operation never checks for", func(t *testing.T) {
		// xapi_vm_clone.ml checks for a cancel only before cloning each disk:
		// a template without disks is cloned regardless.
		g := NewWithT(t)
		task := c.must("Async.VM.clone", tmpl, "clone-despite-cancel").(string)
		c.must("task.cancel", task)
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("success"))
		g.Expect(c.must("VM.get_by_name_label", "clone-despite-cancel")).To(HaveLen(1))
		c.must("task.cancel", task) // xapi_task.ml cancel: no error on a completed task
	})
	t.Run("a pending task that is destroyed goes at the GC pass after it completes", func(t *testing.T) {
		// xapi_task.ml destroy marks it; db_gc_util.ml timeout_tasks collects it.
		g := NewWithT(t)
		task := c.must("Async.VM.clone", tmpl, "destroyed-while-pending").(string)
		c.must("task.destroy", task)
		g.Expect(c.field("task", task, "current_operations")).To(HaveKeyWithValue("task", "destroy"))
		g.Eventually(func() any { return c.field("task", task, "status") }).Should(Equal("success"))
		g.Expect(c.field("task", task, "current_operations")).To(HaveKeyWithValue("task", "destroy"),
			"completion leaves current_operations as they are")
		s.GC()
		_, f := c.do("task.get_record", task)
		g.Expect(f).To(failWith(errHandleInvalid, "task", task))
	})
}

// TestTaskGC follows db_gc_util.ml timeout_tasks (XENAPI.md §11): when the
// pass finds more than max_tasks = 200 young tasks, it keeps only the
// 200 − (number of completed tasks) most recently finished completed ones,
// so with 200 completed tasks or more, none; completed tasks older than
// completed_task_timeout go in any case.
func TestTaskGC(t *testing.T) {
	s := newSim(t, Config{GCInterval: time.Hour})
	c := newClient(t, s.URL()).login()
	host := c.must("host.get_all").([]any)[0]
	tasks := func(c *rawClient) []any { return c.must("task.get_all").([]any) }

	t.Run("up to 200 tasks stay", func(t *testing.T) {
		g := NewWithT(t)
		for range 200 {
			c.must("Async.host.compute_free_memory", host)
		}
		s.GC()
		g.Expect(tasks(c)).To(HaveLen(200))
	})
	t.Run("over 200, with 200 or more completed, every completed task goes", func(t *testing.T) {
		g := NewWithT(t)
		c.must("Async.host.compute_free_memory", host)
		g.Expect(tasks(c)).To(HaveLen(201), "nothing is collected before the pass")
		s.GC()
		g.Expect(tasks(c)).To(BeEmpty())
	})
	t.Run("over 200 with pending tasks, the newest 200 − completed completed tasks stay", func(t *testing.T) {
		g := NewWithT(t)
		s := newSim(t, Config{GCInterval: time.Hour, OpDurations: map[string]time.Duration{"clone": time.Minute}})
		c := newClient(t, s.URL()).login()
		host := c.must("host.get_all").([]any)[0]
		tmpl := c.vmByName("Debian Bookworm 12")
		for i := range 20 {
			c.must("Async.VM.clone", tmpl, fmt.Sprint("gc-", i))
		}
		var completed []string
		for range 190 {
			completed = append(completed, c.must("Async.host.compute_free_memory", host).(string))
			if len(completed) == 180 {
				time.Sleep(1100 * time.Millisecond) // finished is kept to the second
			}
		}
		s.GC()
		g.Expect(tasks(c)).To(HaveLen(30), "all 20 pending and 200 − 190 = 10 completed")
		for _, task := range completed[180:] {
			g.Expect(c.field("task", task, "status")).To(Equal("success"), "the most recently finished stay")
		}
	})
	t.Run("completed tasks older than the timeout go", func(t *testing.T) {
		g := NewWithT(t)
		rc := s.Runtime()
		rc.CompletedTaskTimeout = Duration(2 * time.Second)
		s.SetRuntime(rc)
		task := c.must("Async.host.compute_free_memory", host).(string)
		s.GC()
		g.Expect(tasks(c)).To(ContainElement(task))
		time.Sleep(3100 * time.Millisecond)
		s.GC()
		g.Expect(tasks(c)).To(BeEmpty())
	})
}

// followTask watches a task through event.from, as a client following an
// Async call does, until it completes; it returns the progress values seen
// and how many events carried the task.
func (c *rawClient) followTask(task string) (progress []float64, status string, events int) {
	c.t.Helper()
	token := ""
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		evs, next := c.events([]string{"task/" + task}, token, 5)
		token = next
		for _, e := range evs {
			snap, ok := e["snapshot"].(map[string]any)
			if !ok {
				continue
			}
			events++
			p := snap["progress"].(float64)
			if len(progress) == 0 || progress[len(progress)-1] != p {
				progress = append(progress, p)
			}
			status = snap["status"].(string)
		}
		if status != "" && status != "pending" {
			return progress, status, events
		}
	}
	c.t.Fatalf("task %s did not complete", task)
	return nil, "", 0
}

// TestLongOperationsReportProgress: xapi reports intermediate progress on
// the task of a long operation (XENAPI.md §11): xenopsd as the atoms of a
// start, shutdown or suspend complete (xenops_server.ml perform_atomics,
// xapi_xenops.ml update_task), a clone per disk in proportion to the disks'
// sizes (xapi_vm_clone.ml safe_clone_disks), a provision 0.1 once the VM is
// no longer a template (xapi_vm.ml provision), an evacuation per VM moved
// (xapi_host.ml evacuate). A client following the task through event.from
// sees progress move between 0 and 1 in a few steps.
func TestLongOperationsReportProgress(t *testing.T) {
	s := newSim(t, Config{Hosts: 2, OpDurations: map[string]time.Duration{
		"start": 800 * time.Millisecond, "clone": 600 * time.Millisecond, "provision": 600 * time.Millisecond,
		"host_evacuate": 900 * time.Millisecond, "clean_shutdown": 400 * time.Millisecond,
	}})
	c := newClient(t, s.URL()).login()
	between := func(progress []float64) []float64 {
		var out []float64
		for _, p := range progress {
			if p > 0 && p < 1 {
				out = append(out, p)
			}
		}
		return out
	}
	increasing := func(g Gomega, progress []float64) {
		for i := 1; i < len(progress); i++ {
			g.Expect(progress[i]).To(BeNumerically(">", progress[i-1]), "progress never goes back: %v", progress)
		}
		g.Expect(progress[len(progress)-1]).To(BeNumerically("==", 1))
	}

	t.Run("start, through xenopsd", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.install("Debian Bookworm 12", "progress-start")
		progress, status, events := c.followTask(c.must("Async.VM.start", vm, false, false).(string))
		g.Expect(status).To(Equal("success"))
		increasing(g, progress)
		g.Expect(len(between(progress))).To(BeNumerically(">=", 2))
		g.Expect(events).To(BeNumerically("<=", 8), "a few updates, not a flood")
		progress, _, _ = c.followTask(c.must("Async.VM.clean_shutdown", vm).(string))
		g.Expect(between(progress)).NotTo(BeEmpty())
	})
	t.Run("provision: 0.1 once the VM is no longer a template", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.must("VM.clone", c.vmByName("Debian Bookworm 12"), "progress-provision").(string)
		pool := c.must("pool.get_all").([]any)[0]
		sr := c.must("SR.get_uuid", c.must("pool.get_default_SR", pool)).(string)
		disks := c.must("VM.get_other_config", vm).(map[string]any)["disks"].(string)
		c.must("VM.remove_from_other_config", vm, "disks")
		c.must("VM.add_to_other_config", vm, "disks", strings.ReplaceAll(disks, `sr=""`, `sr="`+sr+`"`))
		task := c.must("Async.VM.provision", vm).(string)
		g.Eventually(func() any { return c.field("task", task, "progress") }).Should(BeNumerically("==", 0.1))
		g.Expect(c.field("VM", vm, "is_a_template")).To(BeFalse(), "un-templated first")
		progress, status, _ := c.followTask(task)
		g.Expect(status).To(Equal("success"))
		increasing(g, progress)
		g.Expect(progress).To(ContainElement(0.1))
		g.Expect(c.field("VM", vm, "VBDs")).To(HaveLen(1))
	})
	t.Run("clone: per disk, in proportion to the disks' sizes", func(t *testing.T) {
		g := NewWithT(t)
		vm := c.must("VM.clone", c.vmByName("Debian Bookworm 12"), "two-disks").(string)
		pool := c.must("pool.get_all").([]any)[0]
		sr := c.must("SR.get_uuid", c.must("pool.get_default_SR", pool)).(string)
		c.must("VM.remove_from_other_config", vm, "disks")
		c.must("VM.add_to_other_config", vm, "disks", `<provision><disk device="0" size="1073741824" sr="`+sr+
			`" bootable="true" type="system"/><disk device="1" size="3221225472" sr="`+sr+
			`" bootable="false" type="user"/></provision>`)
		c.must("VM.provision", vm)
		progress, status, _ := c.followTask(c.must("Async.VM.clone", vm, "two-disks-clone").(string))
		g.Expect(status).To(Equal("success"))
		increasing(g, progress)
		g.Expect(between(progress)).To(Equal([]float64{0.25}), "1 GiB of 4 GiB is done after the first disk")

		progress, _, _ = c.followTask(c.must("Async.VM.clone", c.vmByName("Rocky Linux 9"), "no-disks").(string))
		g.Expect(progress).To(Equal([]float64{0, 1}), "a template without disks has nothing to report")
	})
	t.Run("evacuate: per VM moved", func(t *testing.T) {
		g := NewWithT(t)
		hosts := c.must("host.get_all").([]any)
		for i := range 3 {
			c.must("VM.start_on", c.install("Debian Bookworm 12", fmt.Sprint("evacuee-", i)), hosts[0], false, false)
		}
		c.must("host.disable", hosts[0])
		progress, status, _ := c.followTask(c.must("Async.host.evacuate", hosts[0]).(string))
		g.Expect(status).To(Equal("success"))
		increasing(g, progress)
		g.Expect(between(progress)).To(HaveLen(2))
		g.Expect(between(progress)[0]).To(BeNumerically("~", 1.0/3, 1e-9))
	})
}

// TestTaskMessagesHaveNoAsyncForm: xapi generates no Async variant for the
// messages of task (datamodel.ml no_async_messages_for; XENAPI.md §4).
func TestTaskMessagesHaveNoAsyncForm(t *testing.T) {
	g := NewWithT(t)
	s := newSim(t, Config{})
	c := newClient(t, s.URL()).login()
	task := c.must("Async.host.compute_free_memory", c.must("host.get_all").([]any)[0]).(string)
	for _, m := range []string{"task.cancel", "task.destroy"} {
		_, f := c.do("Async."+m, task)
		g.Expect(f).To(failWith("Fault", "No async mode for this operation (rpc: "+m+")"))
	}
}
