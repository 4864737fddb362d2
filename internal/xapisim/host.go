package xapisim

func init() {
	explicitHandlers["host.enable"] = explicit{fn: hostEnable, async: true, mutating: true}
	explicitHandlers["host.disable"] = explicit{fn: hostDisable, async: true, mutating: true, defaults: []any{true}}
	explicitHandlers["host.evacuate"] = explicit{fn: hostEvacuate, async: true, mutating: true,
		defaults: []any{nullRef, int64(0)}}
	explicitHandlers["host.reboot"] = explicit{fn: hostReboot, async: true, mutating: true}
	explicitHandlers["host.shutdown"] = explicit{fn: hostShutdown, async: true, mutating: true}
	explicitHandlers["host.compute_free_memory"] = explicit{fn: hostComputeFreeMemory, async: true}
}

// hostComputeFreeMemory is the memory a new VM could use on the host.
func hostComputeFreeMemory(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	return max(c.s.freeMemory(h), 0), nil
}

// hostOperation runs op on host: it shows in current_operations for its
// duration, so that a conflicting call fails with OTHER_OPERATION_IN_PROGRESS.
func (c *callCtx) hostOperation(host *object, op string, check func() error, apply func() error) (any, error) {
	s := c.s
	if cur := host.strMap("current_operations"); len(cur) > 0 {
		return nil, otherOperationInProgress("host", host.ref, cur)
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, err
		}
	}
	task := c.operationTask()
	host.strMap("current_operations")[task.ref] = op
	s.db.touch(host)
	s.operationStarted()
	cancelled := s.waitOperation(task, s.opDuration("host_"+op))
	s.stats.OperationsInFlight--
	delete(host.strMap("current_operations"), task.ref)
	s.db.touch(host)
	if cancelled {
		return nil, newFailure(errTaskCancelled, task.ref)
	}
	return nil, apply()
}

// host is the host the first argument names.
func (c *callCtx) host() (*object, error) { return c.s.db.mustGet("host", c.str(0)) }

func hostEnable(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	return c.hostOperation(h, "enable", nil, func() error {
		c.s.db.update(h, "enabled", true)
		return nil
	})
}

func hostDisable(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	c.s.db.update(h, "enabled", false)
	return nil, nil
}

// residentGuests are the VMs on host other than its control domain.
func (s *Server) residentGuests(host *object) []*object {
	var out []*object
	for _, ref := range host.set("resident_VMs") {
		if vm, ok := s.db.get("VM", ref.(string)); ok && !vm.bool("is_control_domain") {
			out = append(out, vm)
		}
	}
	return out
}

func hostEvacuate(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	s := c.s
	// plan places every guest on another enabled host with room, or fails
	// with the evacuation plan's error before anything moves.
	plan := func() (map[*object]*object, error) {
		free := map[*object]int64{}
		var targets []*object
		for _, other := range s.hosts {
			if other.obj != h && other.obj.bool("enabled") {
				targets = append(targets, other.obj)
				free[other.obj] = s.freeMemory(other.obj)
			}
		}
		out := map[*object]*object{}
		for _, vm := range s.residentGuests(h) {
			if len(targets) == 0 {
				return nil, newFailure(errNoHostsAvailable)
			}
			var best *object
			for _, t := range targets {
				if best == nil || free[t] > free[best] {
					best = t
				}
			}
			if free[best] < memoryNeeded(vm) {
				return nil, newFailure(errHostNotEnoughFreeMemory, fmtInt(memoryNeeded(vm)), fmtInt(free[best]))
			}
			free[best] -= memoryNeeded(vm)
			out[vm] = best
		}
		return out, nil
	}
	return c.hostOperation(h, "evacuate", func() error { _, err := plan(); return err }, func() error {
		moves, err := plan()
		if err != nil {
			return err
		}
		for vm, target := range moves {
			s.setResident(vm, target)
		}
		return nil
	})
}

// haltGuests hard-stops every guest of host, as a host reboot or shutdown does.
func (s *Server) haltGuests(host *object) {
	for _, vm := range s.residentGuests(host) {
		s.halt(vm)
		s.refreshAllowedOperations(vm)
	}
}

// mustBeDisabled is the check of host.reboot and host.shutdown.
func mustBeDisabled(h *object) func() error {
	return func() error {
		if h.bool("enabled") {
			return newFailure(errHostNotDisabled)
		}
		return nil
	}
}

func hostReboot(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	return c.hostOperation(h, "reboot", mustBeDisabled(h), func() error {
		c.s.haltGuests(h)
		// xapi enables the host again when it comes back.
		c.s.db.update(h, "enabled", true)
		return nil
	})
}

func hostShutdown(c *callCtx) (any, error) {
	h, err := c.host()
	if err != nil {
		return nil, err
	}
	return c.hostOperation(h, "shutdown", mustBeDisabled(h), func() error {
		c.s.haltGuests(h)
		if m, ok := c.s.db.get("host_metrics", h.str("metrics")); ok {
			c.s.db.update(m, "live", false)
		}
		return nil
	})
}
