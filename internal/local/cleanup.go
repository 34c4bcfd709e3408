package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trellis-mesh/trellis/internal/local/netns"
)

// Cleanup removes what the state file at path lists, and any namespace or
// link whose name carries the mesh prefix: it kills the processes inside
// each namespace and those recorded, deletes the namespaces (their veths
// go with them), the bridge, the hosts files and the generated config
// files, then the state file. Missing things are not errors, so it can run
// any number of times.
func Cleanup(ctx context.Context, path, prefix string, log io.Writer) error {
	logf := func(format string, a ...any) {
		if log != nil {
			fmt.Fprintf(log, format+"\n", a...)
		}
	}
	st, err := ReadState(path)
	if err != nil {
		return err
	}
	if st == nil {
		st = &State{Prefix: prefix}
	}
	var errs []error
	// Recorded processes whose command line still matches.
	var pids []int
	for _, p := range st.Processes {
		if sameProcess(p) {
			logf("stopping leftover %s of %s (pid %d)", p.Role, p.Name, p.PID)
			pids = append(pids, p.PID)
		}
	}
	nsList := append([]string(nil), st.Netns...)
	if prefix != "" {
		found, err := netns.List(prefix + "-")
		if err != nil {
			errs = append(errs, err)
		}
		nsList = append(nsList, found...)
	}
	seen := map[string]bool{}
	var live []string
	for _, ns := range nsList {
		if seen[ns] || !netns.Exists(ns) {
			continue
		}
		seen[ns] = true
		live = append(live, ns)
		pids = append(pids, netnsPIDs(ctx, ns)...)
	}
	killAll(pids)
	for _, ns := range live {
		logf("removing namespace %s", ns)
		if err := netns.Delete(ctx, ns); err != nil {
			errs = append(errs, err)
		}
	}
	links := []string{}
	if st.Bridge != "" {
		links = append(links, st.Bridge)
	}
	links = append(links, st.Bridges...)
	if prefix != "" {
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			if strings.HasPrefix(i.Name, prefix) && isOurLink(i.Name, prefix) {
				links = append(links, i.Name)
			}
		}
	}
	for _, l := range links {
		if _, err := net.InterfaceByName(l); err != nil {
			continue
		}
		logf("removing link %s", l)
		if err := netns.IP(ctx, "link", "delete", l); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	hostsDirs := append([]string(nil), st.HostsDirs...)
	for _, ns := range nsList {
		hostsDirs = append(hostsDirs, filepath.Join("/etc/netns", ns))
	}
	if prefix != "" {
		if ents, err := os.ReadDir("/etc/netns"); err == nil {
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), prefix+"-") {
					hostsDirs = append(hostsDirs, filepath.Join("/etc/netns", e.Name()))
				}
			}
		}
	}
	for _, d := range hostsDirs {
		if filepath.Dir(d) != "/etc/netns" {
			continue // never remove anything else
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	// Files first, then the (now empty) directories, deepest first.
	var dirs []string
	for _, f := range st.Files {
		if fi, err := os.Lstat(f); err == nil && fi.IsDir() {
			dirs = append(dirs, f)
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// isOurLink matches the names Plan gives: PREFIX0 (bridge) and PREFIXvN.
func isOurLink(name, prefix string) bool {
	rest := strings.TrimPrefix(name, prefix)
	if rest == "0" {
		return true
	}
	// veths PREFIXvN, the other networks' bridges PREFIXbN
	for _, kind := range []string{"v", "b"} {
		if n, ok := strings.CutPrefix(rest, kind); ok {
			_, err := strconv.Atoi(n)
			return err == nil
		}
	}
	return false
}

func netnsPIDs(ctx context.Context, ns string) []int {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sameProcess reports whether pid still runs the recorded command (pids
// are reused).
func sameProcess(p Process) bool {
	if p.PID <= 1 || len(p.Argv) == 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	// ip netns exec and setpriv exec the final command: compare its tail.
	last := p.Argv[len(p.Argv)-1]
	return len(args) > 0 && args[len(args)-1] == last && strings.Contains(strings.Join(p.Argv, " "), filepath.Base(args[0]))
}

// killAll sends SIGTERM to every pid, waits up to 3 s for all of them,
// then sends SIGKILL to the rest.
func killAll(pids []int) {
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	alive := func() []int {
		var out []int
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil && !zombie(pid) {
				out = append(out, pid)
			}
		}
		return out
	}
	for i := 0; i < 30 && len(alive()) > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range alive() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// zombie reports whether pid has exited and waits to be reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
