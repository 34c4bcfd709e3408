package local

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// sidecar is one workload's running trellis-proxy generation.
type sidecar struct {
	cmd    *exec.Cmd
	epoch  int
	binary string
}

// startSidecar starts a workload's proxy of this hot restart epoch as uid
// 1337 in its namespace, with its CA credential, and records it as the
// workload's running generation.
func (m *Mesh) startSidecar(ctx context.Context, w PlacedWorkload, argv []string, epoch int) (*exec.Cmd, error) {
	uid := m.r.proxyUID()
	var env []string
	var token *os.File
	if m.r.CA != nil {
		var err error
		if env, token, err = m.proxyCredential(w); err != nil {
			return nil, err
		}
	}
	logName := w.Name + ".proxy.log"
	if epoch > 0 {
		logName = fmt.Sprintf("%s.proxy.%d.log", w.Name, epoch)
	}
	cmd, err := m.startLogged(ctx, "proxy", logName, w, uid, uid, argv, env, token)
	if token != nil {
		token.Close()
	}
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.sidecars[w.Name] = &sidecar{cmd: cmd, epoch: epoch, binary: argv[0]}
	m.mu.Unlock()
	return cmd, nil
}

// HotRestart says how HotRestartProxy runs the new generation.
type HotRestart struct {
	// Binary is the trellis-proxy to run: a new path is an upgrade. Empty
	// runs the binary of the running generation again.
	Binary string
	// DrainTime and ParentShutdownTime are passed as --drain-time-s and
	// --parent-shutdown-time-s (whole seconds, at least 1); zero keeps the
	// proxy's defaults (45 s and 60 s).
	DrainTime, ParentShutdownTime time.Duration
}

// HotRestartProxy replaces a workload's sidecar without losing a
// connection attempt: it starts the proxy command again (Binary, when
// set, instead of the running one) with the next --restart-epoch in the
// same namespace as the same uid, which takes the running proxy's
// listening sockets, warms its configuration and takes over; the old
// generation drains and exits. It returns the new process once the old
// one has exited, or an error if the new one exits first or ctx ends.
// MeshRunner's sidecars are started with --restart-epoch 0 for this.
func (m *Mesh) HotRestartProxy(ctx context.Context, name string, o HotRestart) (*exec.Cmd, error) {
	w, ok := m.Workload(name)
	if !ok {
		return nil, fmt.Errorf("no workload %q", name)
	}
	m.mu.Lock()
	cur := m.sidecars[name]
	var curDone chan struct{}
	if cur != nil {
		curDone = m.done[cur.cmd]
	}
	m.mu.Unlock()
	if cur == nil || m.r.ProxyCommand == nil {
		return nil, fmt.Errorf("workload %q: no sidecar started by the mesh (a pod's proxy restarts with its pod)", name)
	}
	select {
	case <-curDone:
		return nil, fmt.Errorf("workload %q: its sidecar (pid %d) is not running", name, cur.cmd.Process.Pid)
	default:
	}
	argv := m.r.ProxyCommand(m.Plan, w)
	argv[0] = cur.binary
	if o.Binary != "" {
		argv[0] = o.Binary
	}
	epoch := cur.epoch + 1
	argv = setFlag(argv, "--restart-epoch", strconv.Itoa(epoch))
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"--drain-time-s", o.DrainTime}, {"--parent-shutdown-time-s", o.ParentShutdownTime}} {
		if f.d > 0 {
			argv = setFlag(argv, f.name, strconv.Itoa(max(1, int(f.d/time.Second))))
		}
	}
	m.mu.Lock()
	m.retired[cur.cmd] = true
	m.mu.Unlock()
	// On failure the old generation, still serving, stays the workload's.
	keep := func() {
		m.mu.Lock()
		delete(m.retired, cur.cmd)
		m.sidecars[name] = cur
		m.mu.Unlock()
	}
	next, err := m.startSidecar(ctx, w, argv, epoch)
	if err != nil {
		keep()
		return nil, err
	}
	m.mu.Lock()
	newDone := m.done[next]
	m.mu.Unlock()
	select {
	case <-curDone:
		if code := cur.cmd.ProcessState.ExitCode(); code != 0 {
			return next, fmt.Errorf("workload %q: the sidecar of epoch %d exited with status %d after the handover", name, cur.epoch, code)
		}
		return next, nil
	case <-newDone:
		keep()
		return nil, fmt.Errorf("workload %q: the new sidecar (epoch %d) exited before taking over (see %s)", name, epoch, m.LogDir())
	case <-ctx.Done():
		return next, fmt.Errorf("workload %q: epoch %d still running: %w", name, cur.epoch, ctx.Err())
	}
}

// setFlag sets --name value in argv, replacing the value of an existing
// --name.
func setFlag(argv []string, name, value string) []string {
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == name {
			out := append([]string(nil), argv...)
			out[i+1] = value
			return out
		}
	}
	return append(append([]string(nil), argv...), name, value)
}
