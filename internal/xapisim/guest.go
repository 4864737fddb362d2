package xapisim

import (
	"fmt"
	"sort"
	"time"
)

// guestMode is how a VM's simulated guest reports its addresses, set through
// /sim/guest: "" (or "normal") as soon as an interface is up; "linklocal",
// a link-local address (169.254.x.y, fe80::) for duration before its real
// one, as a guest whose DHCP answers late; "delay", nothing for duration;
// "none", never an address.
type guestMode struct {
	mode     string
	duration time.Duration
}

// guestModes are the modes /sim/guest accepts.
var guestModes = map[string]bool{"normal": true, "linklocal": true, "delay": true, "none": true}

// dropGuestMetrics forgets what the guest agent reported, as xapi does when
// the domain goes (xapi_vm_helpers.ml delete_guest_metrics); the guest's
// interfaces are down.
func (s *Server) dropGuestMetrics(vm *object) {
	if gm, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics")); ok {
		s.db.destroy(gm)
		s.db.update(vm, "guest_metrics", nullRef)
	}
	for _, vif := range s.vifsOf(vm) {
		vif.sim.up = time.Time{}
	}
}

// scheduleGuestAgent makes the guest agent of the current boot report after
// the boot delay, unless the VM has no PV drivers.
func (s *Server) scheduleGuestAgent(vm *object) {
	if vm.sim.noPVDrivers {
		return
	}
	if _, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics")); ok {
		return
	}
	gen := vm.sim.bootGen
	report := func() {
		if _, alive := s.db.get("VM", vm.ref); !alive || vm.sim.bootGen != gen || vm.str("power_state") != "Running" {
			return
		}
		s.reportGuestAgent(vm)
	}
	delay := s.cfg.BootDelay
	if delay <= 0 {
		report()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !s.sleep(delay) {
			return
		}
		s.mu.Lock()
		report()
		s.unlock()
	}()
}

// reportGuestAgent creates the VM_guest_metrics a booted guest's agent
// reports; the interfaces of the VIFs attached are up from now.
func (s *Server) reportGuestAgent(vm *object) {
	t := time.Now()
	for _, vif := range s.vifsOf(vm) {
		if vif.bool("currently_attached") && vif.sim.up.IsZero() {
			vif.sim.up = t
		}
	}
	gm := s.db.create("VM_guest_metrics", map[string]any{
		"os_version": map[string]any{"name": vm.str("name_label"), "distro": "linux", "major": "6", "minor": "1"},
		"PV_drivers_version": map[string]any{
			"major": "9", "minor": "3", "micro": "1", "build": "1",
		},
		"PV_drivers_up_to_date": true,
		"PV_drivers_detected":   true,
		"networks":              s.guestNetworks(vm, t),
		"other":                 guestOther(vm),
		"last_updated":          t.UTC(),
		"live":                  true,
		"can_use_hotplug_vbd":   "yes",
		"can_use_hotplug_vif":   "yes",
	})
	s.db.update(vm, "guest_metrics", gm.ref)
	s.refreshAllowedOperations(vm)
	s.scheduleGuestNetworks(vm, t)
}

// guestOther is VM_guest_metrics.other: the guest's control/feature-*
// keys (xapi_guest_agent.ml other), and the hostname cloud-init set from a
// config drive under "hostname", which xapi does not have: the datamodel
// the simulator serves (API 2.23) has no field for a guest's hostname
// (later xapi reports the agent's data/host_name_dns in
// VM_guest_metrics.netbios_name["host_name"]).
func guestOther(vm *object) map[string]any {
	other := map[string]any{
		"feature-shutdown": "1", "feature-suspend": "1", "feature-poweroff": "1",
		"feature-reboot": "1", "has-vendor-device": "0",
	}
	if ci := vm.sim.cloudInit; ci != nil && ci.hostname != "" {
		other["hostname"] = ci.hostname
	}
	return other
}

// vifsOf are a VM's VIFs, by device.
func (s *Server) vifsOf(vm *object) []*object {
	var vifs []*object
	for _, ref := range vm.set("VIFs") {
		if vif, ok := s.db.get("VIF", ref.(string)); ok {
			vifs = append(vifs, vif)
		}
	}
	sort.Slice(vifs, func(i, j int) bool { return vifs[i].str("device") < vifs[j].str("device") })
	return vifs
}

// addressPhase is what a guest interface that came up at up reports at t:
// nothing yet, a link-local address, or its real one; next is when that
// changes (zero if never).
func (m guestMode) addressPhase(up, t time.Time) (phase string, next time.Time) {
	switch m.mode {
	case "none":
		return "", time.Time{}
	case "delay":
		if ready := up.Add(m.duration); t.Before(ready) {
			return "", ready
		}
	case "linklocal":
		if ready := up.Add(m.duration); t.Before(ready) {
			return "linklocal", ready
		}
	}
	return "real", time.Time{}
}

// guestNetworks is what the guest agent reports at t in
// VM_guest_metrics.networks (xapi_guest_agent.ml: "<device>/ip" for the
// first IPv4 address, "<device>/ipv4/<n>", "<device>/ipv6/<n>"): addresses
// for each VIF that is attached, on a network that exists, and whose
// interface is up, as the VM's guest mode has it. A VIF keeps its
// addresses while it stays on its network, as a DHCP lease follows the MAC.
func (s *Server) guestNetworks(vm *object, t time.Time) map[string]any {
	networks := map[string]any{}
	for i, vif := range s.vifsOf(vm) {
		if _, ok := s.db.get("network", vif.str("network")); !ok || !vif.bool("currently_attached") ||
			vif.sim.up.IsZero() || t.Before(vif.sim.up) {
			continue
		}
		phase, _ := vm.sim.guest.addressPhase(vif.sim.up, t)
		if phase == "" {
			continue
		}
		if vif.sim.ip == 0 {
			s.nextIP++
			vif.sim.ip = s.nextIP
		}
		n, d := vif.sim.ip, vif.str("device")
		ipv4 := fmt.Sprintf("10.%d.%d.%d", 10+(n>>16)&0xff, (n>>8)&0xff, n&0xff)
		if ci := vm.sim.cloudInit; ci != nil && ci.address != "" && i == 0 {
			ipv4 = ci.address // the first interface's static address
		}
		linkLocal4 := fmt.Sprintf("169.254.%d.%d", 1+(n>>8)%254, n&0xff)
		linkLocal6 := fmt.Sprintf("fe80::%x:%x", n>>16, n&0xffff)
		if phase == "linklocal" {
			networks[d+"/ip"], networks[d+"/ipv4/0"], networks[d+"/ipv6/0"] = linkLocal4, linkLocal4, linkLocal6
			continue
		}
		networks[d+"/ip"], networks[d+"/ipv4/0"] = ipv4, ipv4
		networks[d+"/ipv6/0"] = fmt.Sprintf("fd00::%x:%x", n>>16, n&0xffff)
		networks[d+"/ipv6/1"] = linkLocal6
	}
	return networks
}

// guestNetworksChanged makes a running guest's agent report its addresses
// again, after its VIFs or its mode changed or an address's time came.
func (s *Server) guestNetworksChanged(vm *object) {
	gm, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics"))
	if !ok {
		return
	}
	t := time.Now()
	networks := s.guestNetworks(vm, t)
	if fmt.Sprint(networks) != fmt.Sprint(gm.strMap("networks")) {
		s.db.update(gm, "networks", networks, "last_updated", t.UTC())
	}
	s.scheduleGuestNetworks(vm, t)
}

// scheduleGuestNetworks wakes the guest agent when one of its interfaces
// is next due to come up or to get its real address.
func (s *Server) scheduleGuestNetworks(vm *object, t time.Time) {
	var next time.Time
	for _, vif := range s.vifsOf(vm) {
		if !vif.bool("currently_attached") || vif.sim.up.IsZero() {
			continue
		}
		due := vif.sim.up
		if !due.After(t) {
			_, due = vm.sim.guest.addressPhase(vif.sim.up, t)
		}
		if !due.IsZero() && (next.IsZero() || due.Before(next)) {
			next = due
		}
	}
	if next.IsZero() || next.Equal(vm.sim.guestWake) {
		return
	}
	vm.sim.guestWake = next
	gen := vm.sim.bootGen
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !s.sleep(time.Until(next)) {
			return
		}
		s.mu.Lock()
		defer s.unlock()
		if vm.sim.guestWake.Equal(next) {
			vm.sim.guestWake = time.Time{}
		}
		if _, alive := s.db.get("VM", vm.ref); alive && vm.sim.bootGen == gen {
			s.guestNetworksChanged(vm)
		}
	}()
}

// interfaceChanged follows a VIF's guest interface once the device is
// plugged or unplugged, or moved to another network (where the guest asks
// for a new address): plugged into a guest whose agent runs, it comes up
// after the time a guest takes to bring an interface up, the boot delay;
// unplugged, it is down and its address gone.
func (s *Server) interfaceChanged(vm, vif *object, newAddress bool) {
	vif.sim.up = time.Time{}
	if newAddress {
		vif.sim.ip = 0
	}
	if _, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics")); ok && vif.bool("currently_attached") {
		vif.sim.up = time.Now().Add(s.cfg.BootDelay)
	}
	s.guestNetworksChanged(vm)
}

// setGuestMode changes how a VM's guest reports its addresses; a running
// guest brings its interfaces up again, so that the mode shows at once.
func (s *Server) setGuestMode(vm *object, m guestMode) {
	vm.sim.guest = m
	if _, ok := s.db.get("VM_guest_metrics", vm.str("guest_metrics")); !ok {
		return
	}
	t := time.Now()
	for _, vif := range s.vifsOf(vm) {
		if vif.bool("currently_attached") {
			vif.sim.up = t
		}
	}
	s.guestNetworksChanged(vm)
}
