package xapisim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// BrownfieldVM is a VM another tool made, as POST /sim/brownfield reports it.
type BrownfieldVM struct {
	UUID      string `json:"uuid"`
	NameLabel string `json:"name_label"`
}

// Brownfield makes n VMs as a tool other than the operator would, with the
// same steps a client takes through the API: VM.clone of the template named
// template, its other_config:disks pointed at the pool's default SR, then
// VM.provision (xapi_templates.ml), one VIF (device 0) on the management
// network, and VM.start if start is set. The VMs are named prefix-1,
// prefix-2, ... (after the VMs already so named) and carry nothing of the
// operator's. No task is made and no call counted.
func (s *Server) Brownfield(n int, template, prefix string, start bool) ([]BrownfieldVM, error) {
	s.mu.Lock()
	defer s.unlock()
	var tmpl *object
	for _, vm := range s.db.all("VM") {
		if vm.bool("is_a_template") && !vm.bool("is_a_snapshot") && vm.str("name_label") == template {
			tmpl = vm
		}
	}
	if tmpl == nil {
		return nil, fmt.Errorf("no template named %q", template)
	}
	sr, ok := s.db.get("SR", s.pool.str("default_SR"))
	if !ok {
		return nil, fmt.Errorf("the pool has no default SR")
	}
	var network *object
	for _, nw := range s.db.all("network") {
		if nw.str("name_label") == networkEth0 {
			network = nw
		}
	}
	taken := map[string]bool{}
	for _, vm := range s.db.all("VM") {
		taken[vm.str("name_label")] = true
	}
	out := []BrownfieldVM{}
	next := 1
	for range n {
		for taken[fmt.Sprintf("%s-%d", prefix, next)] {
			next++
		}
		name := fmt.Sprintf("%s-%d", prefix, next)
		taken[name] = true
		vm, err := s.brownfieldVM(tmpl, sr, network, name, start)
		if err != nil {
			return out, err
		}
		out = append(out, BrownfieldVM{UUID: vm.str("uuid"), NameLabel: name})
	}
	return out, nil
}

// brownfieldVM clones, provisions, connects and maybe starts one VM.
func (s *Server) brownfieldVM(tmpl, sr, network *object, name string, start bool) (*object, error) {
	vm, err := s.copyVM(tmpl, name, nil)
	if err != nil {
		return nil, err
	}
	s.setIsATemplate(vm, false)
	oc := vm.strMap("other_config")
	var disks []provisionDisk
	if text, ok := oc["disks"].(string); ok {
		text = strings.ReplaceAll(text, `sr=""`, `sr="`+sr.str("uuid")+`"`)
		if disks, err = parseProvision(text); err != nil {
			return nil, err
		}
	}
	for _, d := range disks {
		if err := s.provisionDisk(vm, d); err != nil {
			return nil, err
		}
	}
	delete(oc, "disks")
	delete(oc, "postinstall")
	s.db.touch(vm)
	if network != nil {
		if _, err := s.createVIF(vm, map[string]any{
			"device": "0", "network": network.ref, "MAC": "", "MTU": "1500", "other_config": map[string]any{},
			"qos_algorithm_type": "", "qos_algorithm_params": map[string]any{}, "currently_attached": false,
			"locking_mode": "network_default", "ipv4_allowed": []any{}, "ipv6_allowed": []any{},
		}, true); err != nil {
			return nil, err
		}
	}
	if start {
		host, err := s.chooseHost(vm, nil)
		if err != nil {
			return nil, err
		}
		s.boot(vm, host, false)
	}
	s.refreshAllowedOperations(vm)
	return vm, nil
}

// simBrownfield serves POST /sim/brownfield?count=<n>&start=<bool>
// [&template=<name_label>][&prefix=<name>]: Brownfield, answered with the
// new VMs as JSON.
func (s *Server) simBrownfield(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	n, err := strconv.Atoi(q.Get("count"))
	if q.Get("count") == "" {
		n, err = 1, nil
	}
	start, errStart := strconv.ParseBool(q.Get("start"))
	if q.Get("start") == "" {
		start, errStart = false, nil
	}
	if err != nil || n < 1 || errStart != nil {
		http.Error(w, "give count=<n ≥ 1> and start=true|false", http.StatusBadRequest)
		return
	}
	template, prefix := q.Get("template"), q.Get("prefix")
	if template == "" {
		template = "Debian Bookworm 12"
	}
	if prefix == "" {
		prefix = "brownfield"
	}
	vms, err := s.Brownfield(n, template, prefix, start)
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(vms)
}
