package local

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIsOurLink(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"trellis0", true},
		{"trellisv0", true},
		{"trellisv12", true},
		{"trellis1", false},
		{"trellisb1", true},
		{"trellisbx", false},
		{"trellisvx", false},
		{"trellis-extra", false},
		{"eth0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isOurLink(tt.name, "trellis"); got != tt.want {
				t.Errorf("isOurLink(%q): got %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

// A recorded pid is only killed while it still runs the recorded command.
func TestSameProcess(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Start returns after fork; wait until the child has exec'd sleep, or
	// /proc still shows the test binary's command line.
	cmdline := fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(cmdline); strings.HasPrefix(string(b), "sleep\x00") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed sleep", cmdline)
		}
	}
	tests := []struct {
		name string
		p    Process
		want bool
	}{
		{"same command", Process{PID: cmd.Process.Pid, Argv: []string{"ip", "netns", "exec", "x", "setpriv", "--", "sleep", "30"}}, true},
		{"pid reused by another command", Process{PID: cmd.Process.Pid, Argv: []string{"trellis-proxy", "--ip", "30"}}, false},
		{"gone", Process{PID: 1 << 22, Argv: []string{"sleep", "30"}}, false},
		{"init never", Process{PID: 1, Argv: []string{"sleep", "30"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameProcess(tt.p); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// Cleanup removes recorded files before the directories holding them, and
// is a no-op the second time.
func TestCleanupFilesAndIdempotence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.MkdirAll(cfg, 0o755)
	file := filepath.Join(cfg, "mesh.yaml")
	os.WriteFile(file, []byte("x"), 0o644)
	user := filepath.Join(dir, "user.yaml") // not recorded: must stay
	os.WriteFile(user, []byte("x"), 0o644)
	path := StatePath(dir, "t6f")
	if err := RecordState(path, func(s *State) { s.Prefix = "t6f"; s.Files = []string{cfg, file} }); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := Cleanup(t.Context(), path, "t6f", nil); err != nil {
			t.Fatalf("cleanup %d: %v", i, err)
		}
	}
	for _, p := range []string{cfg, file, path} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left", p)
		}
	}
	if _, err := os.Stat(user); err != nil {
		t.Errorf("unrecorded file removed: %v", err)
	}
}
