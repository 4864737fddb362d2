package xapisim

func init() {
	explicitHandlers["VDI.destroy"] = explicit{fn: vdiDestroy, async: true, mutating: true}
	explicitHandlers["VBD.destroy"] = explicit{fn: vbdDestroy, async: true, mutating: true}
	explicitHandlers["VIF.destroy"] = explicit{fn: vifDestroy, async: true, mutating: true}
}

// vdiDestroy is VDI.destroy: refused while a VBD has the disk attached;
// otherwise its VBDs go with it (xapi_vdi.ml).
func vdiDestroy(c *callCtx) (any, error) {
	vdi, err := c.s.db.mustGet("VDI", c.str(0))
	if err != nil {
		return nil, err
	}
	for _, ref := range vdi.set("VBDs") {
		if vbd, ok := c.s.db.get("VBD", ref.(string)); ok && vbd.bool("currently_attached") {
			return nil, newFailure(errVDIInUse, vdi.ref, "destroy")
		}
	}
	c.s.destroyVDI(vdi)
	return nil, nil
}

// vbdDestroy is VBD.destroy: refused while the VBD is attached.
func vbdDestroy(c *callCtx) (any, error) {
	vbd, err := c.s.db.mustGet("VBD", c.str(0))
	if err != nil {
		return nil, err
	}
	if vbd.bool("currently_attached") {
		return nil, newFailure(errOperationNotAllowed, "VBD is currently attached")
	}
	if vm, ok := c.s.db.get("VM", vbd.str("VM")); ok {
		c.s.db.refSetRemove(vm, "VBDs", vbd.ref)
	}
	if vdi, ok := c.s.db.get("VDI", vbd.str("VDI")); ok {
		c.s.db.refSetRemove(vdi, "VBDs", vbd.ref)
	}
	c.s.db.destroy(vbd)
	return nil, nil
}

// vifDestroy is VIF.destroy: refused while the VIF is attached.
func vifDestroy(c *callCtx) (any, error) {
	vif, err := c.s.db.mustGet("VIF", c.str(0))
	if err != nil {
		return nil, err
	}
	if vif.bool("currently_attached") {
		return nil, newFailure(errOperationNotAllowed, "VIF is currently attached")
	}
	if vm, ok := c.s.db.get("VM", vif.str("VM")); ok {
		c.s.db.refSetRemove(vm, "VIFs", vif.ref)
	}
	if n, ok := c.s.db.get("network", vif.str("network")); ok {
		c.s.db.refSetRemove(n, "VIFs", vif.ref)
	}
	c.s.db.destroy(vif)
	return nil, nil
}
