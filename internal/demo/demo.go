package demo

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/demoapp"
	"github.com/trellis-mesh/trellis/internal/local"
)

//go:embed scenarios/*.yaml
var scenarios embed.FS

// Options configure the demo; zero values are the documented defaults.
type Options struct {
	// BinDir holds trellis, trellisd and trellis-proxy; empty means next
	// to the running program, then PATH.
	BinDir string
	// Calls per measured step; zero means 1000.
	Calls int
	// DelayCalls is how many (concurrent) calls measure the 5 s delay
	// fault; zero means 10.
	DelayCalls int
	// Keep leaves the mesh running after the demo (tear down with
	// `trellis local down --prefix PREFIX`).
	Keep bool
	// NoIntercept runs without network namespaces or iptables: explicit
	// proxy ports on 127.0.0.1. Forced when not root.
	NoIntercept bool
	// Prefix names what the demo creates; empty means "trellis".
	Prefix string
	// Subnet for the workloads; zero means 10.244.0.0/24 (VIPs in
	// 10.245.0.0/24).
	Subnet, VIPSubnet netip.Prefix
	// StateDir; see local.StateDir.
	StateDir string
	// JSON, when set, receives the report as JSON.
	JSON string
	// Out receives progress lines and tables; nil means os.Stdout.
	Out io.Writer
}

// Step is one measured step.
type Step struct {
	Name   string         `json:"name"`
	Title  string         `json:"title"`
	URL    string         `json:"url"`
	Header string         `json:"header,omitempty"`
	Result demoapp.Result `json:"result"`
}

// Check is one expectation the demo verifies.
type Check struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	OK   bool   `json:"ok"`
}

// Report is what the demo measured.
type Report struct {
	Intercept bool `json:"intercept"`
	// Dashboard is trellisd's dashboard URL while the demo runs.
	Dashboard string  `json:"dashboard,omitempty"`
	Steps     []Step  `json:"steps"`
	Checks    []Check `json:"checks"`
}

// Step returns the step with this name, or nil.
func (r *Report) Step(name string) *Step {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// Answers the demo apps give.
const (
	BillV1   = "this is bill-service-v1"
	BillV2   = "this is bill-service-v2"
	CanaryV1 = "this is canary-v1"
	CanaryV2 = "this is canary-v2"
	Abort    = "HTTP 500"
)

const (
	billURL   = "http://bill-service:9999/"
	canaryURL = "http://canary.default/"
	frontEnd  = "front-tomcat-v1"
)

// Spec returns the demo's workloads with the trellis binary filled in.
func Spec(trellis string) (*local.Spec, error) {
	b, err := scenarios.ReadFile("scenarios/workloads.yaml")
	if err != nil {
		return nil, err
	}
	var s local.Spec
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		return nil, fmt.Errorf("embedded workloads.yaml: %w", err)
	}
	s.ExpandCommand(trellis)
	return &s, s.Validate()
}

type demo struct {
	opts   Options
	out    io.Writer
	bins   local.Binaries
	mesh   *local.Mesh
	cfgDir string
	report Report
	load   func(ctx context.Context, calls, conc int, header, url string) (demoapp.Result, error)
	// apply and remove act like `kubectl apply/delete -f` with one of the
	// embedded scenario files.
	apply  func(file string) error
	remove func(file string) error
	// convergeTimeout overrides convergeTimeout (tests).
	convergeTimeout time.Duration
}

// Run runs the demo. On return (also after an error or Ctrl-C) nothing it
// created is left, unless Keep.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Calls <= 0 {
		opts.Calls = 1000
	}
	if opts.DelayCalls <= 0 {
		opts.DelayCalls = 10
	}
	if opts.Prefix == "" {
		opts.Prefix = "trellis"
	}
	d := &demo{opts: opts, out: opts.Out}
	if d.out == nil {
		d.out = os.Stdout
	}
	bins, err := local.FindBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	// The proxy (uid 1337) and the apps run as other users: copy the
	// binaries somewhere they can run them if they cannot reach these.
	if os.Geteuid() == 0 && !opts.NoIntercept {
		staged, unstage, err := bins.Stage(opts.StateDir, opts.Prefix)
		if err != nil {
			return nil, err
		}
		if !opts.Keep {
			defer unstage()
		}
		bins = staged
	}
	d.bins = bins
	if !opts.NoIntercept && os.Geteuid() != 0 {
		d.printf("! not running as root: network namespaces and iptables interception need root (run trellis demo as root).")
		d.printf("! running the same scenarios with explicit proxy ports on 127.0.0.1 instead.")
		opts.NoIntercept = true
		d.opts.NoIntercept = true
	}
	var teardown func() bool
	failed := true // until the checks pass: show the logs before removing them
	if opts.NoIntercept {
		teardown, err = d.upExplicit(ctx)
	} else {
		teardown, err = d.upIntercepted(ctx)
	}
	if teardown != nil && !opts.Keep {
		defer func() {
			if failed {
				d.logTails()
			}
			d.printf("tearing down")
			if teardown() {
				d.printf("done: nothing left behind")
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	d.report.Intercept = !opts.NoIntercept
	if err := d.scenarios(ctx); err != nil {
		return &d.report, err
	}
	d.summary()
	if opts.JSON != "" {
		b, _ := json.MarshalIndent(d.report, "", "  ")
		if err := os.WriteFile(opts.JSON, b, 0o644); err != nil {
			return &d.report, err
		}
	}
	if opts.Keep && !opts.NoIntercept {
		d.printf("the mesh keeps running (--keep); config dir %s; remove it with: trellis local down --prefix %s", d.cfgDir, opts.Prefix)
	}
	var bad []string
	for _, c := range d.report.Checks {
		if !c.OK {
			bad = append(bad, c.Name)
		}
	}
	if len(bad) > 0 {
		return &d.report, fmt.Errorf("%d of %d checks failed: %s", len(bad), len(d.report.Checks), strings.Join(bad, "; "))
	}
	failed = false
	return &d.report, nil
}

func (d *demo) printf(format string, a ...any) { fmt.Fprintf(d.out, format+"\n", a...) }

// upIntercepted starts the mesh in network namespaces with interception.
func (d *demo) upIntercepted(ctx context.Context) (func() bool, error) {
	spec, err := Spec(d.bins.Trellis)
	if err != nil {
		return nil, err
	}
	plan, err := local.NewPlan(spec, local.Options{Prefix: d.opts.Prefix, Subnet: d.opts.Subnet, VIPSubnet: d.opts.VIPSubnet})
	if err != nil {
		return nil, err
	}
	d.cfgDir = filepath.Join(local.StateDir(d.opts.StateDir), "config-"+d.opts.Prefix)
	// Leftovers of a crashed run go first (Up does it too, but the config
	// dir must be empty before trellisd reads it).
	if err := local.Cleanup(ctx, local.StatePath(d.opts.StateDir, d.opts.Prefix), d.opts.Prefix, d.out); err != nil {
		return nil, err
	}
	os.RemoveAll(d.cfgDir)
	if err := os.MkdirAll(d.cfgDir, 0o755); err != nil {
		return nil, err
	}
	d.printf("== trellis demo: bill-service (seed 000) and canary (seed 002) in a local mesh")
	d.printf("   each workload in its own network namespace, iptables interception, trellis-proxy as uid 1337")
	r := d.bins.MeshRunner(plan, d.cfgDir, d.opts.StateDir, prefixWriter{d.out, "   "})
	startTrellisd := r.BeforeProcesses
	r.BeforeProcesses = func(ctx context.Context, m *local.Mesh) error {
		if err := m.TrackFile(d.cfgDir); err != nil {
			return err
		}
		return startTrellisd(ctx, m)
	}
	m, err := r.Up(ctx)
	if err != nil {
		return nil, err
	}
	d.mesh = m
	teardown := func() bool {
		if err := m.Down(context.Background()); err != nil {
			d.printf("! teardown: %v", err)
			return false
		}
		return true
	}
	d.printf("waiting for the apps and sidecars to be ready")
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := m.WaitReady(wctx); err != nil {
		return teardown, err
	}
	d.report.Dashboard = local.DashboardURL(plan.HostIP.String())
	d.printf("dashboard (service graph, config, measured split) while the demo runs: %s", d.report.Dashboard)
	d.load = func(ctx context.Context, calls, conc int, header, url string) (demoapp.Result, error) {
		argv := []string{d.bins.Trellis, "demoapp", "load", "--calls", strconv.Itoa(calls), "--concurrency", strconv.Itoa(conc), "--timeout", "20s"}
		if header != "" {
			argv = append(argv, "-H", header)
		}
		out, err := m.Exec(ctx, frontEnd, append(argv, url)...)
		if err != nil {
			return demoapp.Result{}, err
		}
		var res demoapp.Result
		if err := json.Unmarshal(out, &res); err != nil {
			return res, fmt.Errorf("load output %q: %w", out, err)
		}
		return res, nil
	}
	d.apply = func(file string) error {
		objs, err := manifest(file)
		if err != nil {
			return err
		}
		for _, o := range objs {
			dst := filepath.Join(d.cfgDir, o.File())
			if err := m.TrackFile(dst); err != nil {
				return err
			}
			if err := os.WriteFile(dst+".tmp", []byte(o.Text), 0o644); err != nil {
				return err
			}
			if err := os.Rename(dst+".tmp", dst); err != nil {
				return err
			}
		}
		return nil
	}
	d.remove = func(file string) error {
		objs, err := manifest(file)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := os.Remove(filepath.Join(d.cfgDir, o.File())); err != nil {
				return err
			}
		}
		return nil
	}
	return teardown, nil
}

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	_, err := io.WriteString(p.w, p.prefix+string(b))
	return len(b), err
}

var errNotConverged = errors.New("configuration did not take effect")

// manifest reads an embedded scenario file and splits it into objects.
func manifest(file string) ([]object, error) {
	b, err := scenarios.ReadFile("scenarios/" + file)
	if err != nil {
		return nil, err
	}
	objs, err := splitManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return objs, nil
}

// logTails prints the end of every process log, before teardown removes
// them, so a failed run can be diagnosed.
func (d *demo) logTails() {
	dir := filepath.Join(local.StateDir(d.opts.StateDir), "logs-"+d.opts.Prefix)
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 5 {
			lines = lines[len(lines)-5:]
		}
		d.printf("--- %s (last lines)", filepath.Base(f))
		for _, l := range lines {
			d.printf("    %s", l)
		}
	}
}
