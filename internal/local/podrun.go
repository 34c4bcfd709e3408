package local

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// PodRun is one run of a workload's injected pod, started by StartPod the
// way a kubelet starts it: the proxy, then its readiness gate, then the
// app. A run to completion (a Job's pod) ends when its app exits: the
// proxy is stopped then, as Kubernetes stops native sidecars.
type PodRun struct {
	m     *Mesh
	w     PlacedWorkload
	proxy *exec.Cmd
	app   *exec.Cmd
	ended chan struct{}
	once  sync.Once
	// AppExit is the app's exit code once the run ended (-1: killed or
	// no app).
	AppExit int
}

// StartPod starts a run of the named workload, which must have PodSteps
// (the Runner's ProxyCommand gives the proxy's argv). It returns once the
// app is started, or with an error if the proxy never becomes ready
// within ctx (the proxy is then stopped).
func (m *Mesh) StartPod(ctx context.Context, name string) (*PodRun, error) {
	w, ok := m.Workload(name)
	if !ok || w.Pod == nil {
		return nil, fmt.Errorf("workload %q has no pod steps (make the spec with trellis local from-pod)", name)
	}
	m.mu.Lock()
	if prev := m.pods[name]; prev != nil {
		select {
		case <-prev.ended:
		default:
			m.mu.Unlock()
			return nil, fmt.Errorf("workload %q: its pod is still running", name)
		}
	}
	m.mu.Unlock()
	r := &PodRun{m: m, w: w, ended: make(chan struct{}), AppExit: -1}
	uid := m.r.proxyUID()
	env := w.Pod.ProxyEnv
	var token *os.File
	if m.r.CA != nil {
		cenv, t, err := m.proxyCredential(w)
		if err != nil {
			return nil, err
		}
		env, token = append(append([]string(nil), env...), cenv...), t
	}
	proxy, err := m.start(ctx, "proxy", w, uid, uid, m.r.ProxyCommand(m.Plan, w), env, token)
	if token != nil {
		token.Close()
	}
	if err != nil {
		return nil, err
	}
	r.proxy = proxy
	m.mu.Lock()
	m.pods[name] = r
	m.inPods[proxy] = true
	m.mu.Unlock()
	if err := r.gate(ctx); err != nil {
		r.Stop()
		return nil, fmt.Errorf("workload %s: %w", name, err)
	}
	if len(w.Command) == 0 {
		return r, nil // a proxy alone, until Stop
	}
	au, ag := m.r.appIDs()
	app, err := m.start(ctx, "app", w, au, ag, w.Command, w.Env, nil)
	if err != nil {
		r.Stop()
		return nil, err
	}
	m.mu.Lock()
	r.app = app
	m.inPods[app] = true
	appDone := m.done[app]
	m.mu.Unlock()
	if w.Pod.RunToCompletion {
		go func() {
			<-appDone
			r.Stop()
		}()
	}
	return r, nil
}

// gate waits for the proxy the way the pod's spec asks: the native
// sidecar's startup probe, or the fallback form's postStart command; with
// neither it returns at once, as a kubelet would start the app.
func (r *PodRun) gate(ctx context.Context) error {
	steps, w := r.w.Pod, r.w
	r.m.mu.Lock()
	proxyDone := r.m.done[r.proxy]
	r.m.mu.Unlock()
	switch {
	case len(steps.PostStart) > 0:
		argv := podCommand(r.m.r.proxyBinary(), steps.PostStart)
		var out strings.Builder
		errc := make(chan error, 1)
		go func() { errc <- ExecIn(ctx, w.Netns, r.m.r.proxyUID(), argv, nil, &out, &out) }()
		select {
		case err := <-errc:
			if err != nil {
				return fmt.Errorf("postStart %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
			}
			return nil
		case <-proxyDone:
			return fmt.Errorf("the proxy exited before its postStart hook succeeded (logs in %s)", r.m.LogDir())
		}
	case steps.StartupProbe != "":
		// The injected startup probe's budget: 600 tries, 1 s apart.
		ctx, cancel := context.WithTimeout(ctx, 600*time.Second)
		defer cancel()
		var last error
		for {
			ok, err := r.m.probe(ctx, w, steps.StartupProbe)
			if ok {
				return nil
			}
			last = err
			select {
			case <-proxyDone:
				return fmt.Errorf("the proxy exited before its startup probe passed (logs in %s)", r.m.LogDir())
			case <-ctx.Done():
				return fmt.Errorf("startup probe %s: %v", steps.StartupProbe, last)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// Stop ends the run as a kubelet deletes a pod with native sidecars: the
// app gets SIGTERM first and the proxy only once the app has exited, each
// given the pod's termination grace period before SIGKILL. Stop is
// idempotent and returns when both have ended.
func (r *PodRun) Stop() {
	r.once.Do(func() {
		grace := time.Duration(r.w.Pod.grace()) * time.Second
		if r.app != nil {
			r.m.terminate([]*exec.Cmd{r.app}, grace)
			if st := r.app.ProcessState; st != nil {
				r.AppExit = st.ExitCode()
			}
		}
		r.m.terminate([]*exec.Cmd{r.proxy}, grace)
		close(r.ended)
	})
	<-r.ended
}

// Wait blocks until the run has ended (a run to completion ends by
// itself when its app exits) or ctx ends.
func (r *PodRun) Wait(ctx context.Context) error {
	select {
	case <-r.ended:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("workload %s: pod still running: %w", r.w.Name, ctx.Err())
	}
}

// Ended reports whether the run has ended.
func (r *PodRun) Ended() bool {
	select {
	case <-r.ended:
		return true
	default:
		return false
	}
}

// ProxyExited reports whether the run's proxy has ended.
func (r *PodRun) ProxyExited() bool {
	r.m.mu.Lock()
	done := r.m.done[r.proxy]
	r.m.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// proxyBinary is the local trellis-proxy path (for a pod's postStart
// hook): the first word of IptablesCommand.
func (r *Runner) proxyBinary() string {
	if len(r.IptablesCommand) > 0 {
		return r.IptablesCommand[0]
	}
	return "trellis-proxy"
}

// Pod returns the latest run of the named pod workload, or nil.
func (m *Mesh) Pod(name string) *PodRun {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pods[name]
}
