package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// DefaultStateDir is where state files live when running as root.
const DefaultStateDir = "/run/trellis"

// StateDir returns the state directory: dir if set, /run/trellis for root,
// else $XDG_RUNTIME_DIR/trellis, else the temp dir.
func StateDir(dir string) string {
	switch {
	case dir != "":
		return dir
	case os.Geteuid() == 0:
		return DefaultStateDir
	case os.Getenv("XDG_RUNTIME_DIR") != "":
		return filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "trellis")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("trellis-%d", os.Geteuid()))
}

// State lists everything a local mesh created, written before each thing is
// created so that a crashed run's leftovers can be removed by the next one
// (and so `trellis proxy-config` can find the workloads).
type State struct {
	Prefix     string          `json:"prefix"`
	Bridge     string          `json:"bridge,omitempty"`
	Bridges    []string        `json:"bridges,omitempty"` // the other networks' bridges
	HostIP     string          `json:"hostIP,omitempty"`
	Netns      []string        `json:"netns,omitempty"`
	HostsDirs  []string        `json:"hostsDirs,omitempty"`
	Files      []string        `json:"files,omitempty"`
	Processes  []Process       `json:"processes,omitempty"`
	Workloads  []StateWorkload `json:"workloads,omitempty"`
	Intercept  bool            `json:"intercept"`
	XDSAddress string          `json:"xdsAddress,omitempty"`
}

// Process is one process the mesh started.
type Process struct {
	PID  int      `json:"pid"`
	Role string   `json:"role"` // "app", "proxy", "trellisd"
	Name string   `json:"name"`
	Argv []string `json:"argv"`
}

// StateWorkload is where to find a workload and its proxy.
type StateWorkload struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Netns     string `json:"netns,omitempty"`
	IP        string `json:"ip"`
	NodeID    string `json:"nodeID"`
	// AdminAddress is the proxy's admin API, inside Netns when set.
	AdminAddress string `json:"adminAddress,omitempty"`
}

// stateFile persists State; safe for concurrent use.
type stateFile struct {
	path string
	mu   sync.Mutex
	s    State
}

// StatePath is the state file of the mesh with this prefix.
func StatePath(dir, prefix string) string {
	return filepath.Join(StateDir(dir), "local-"+prefix+".json")
}

func (f *stateFile) update(fn func(s *State)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.s)
	b, err := json.MarshalIndent(f.s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	return os.Rename(tmp, f.path)
}

func (f *stateFile) snapshot() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}

// ReadState reads a state file; a missing file gives (nil, nil).
func ReadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// RecordState updates the state file at path (creating it), for runs that
// manage their own processes and files (the no-root demo) but want Cleanup
// to remove them after a crash.
func RecordState(path string, fn func(s *State)) error {
	st, err := ReadState(path)
	if err != nil {
		return err
	}
	f := &stateFile{path: path}
	if st != nil {
		f.s = *st
	}
	return f.update(fn)
}
