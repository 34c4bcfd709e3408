package demo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/demoapp"
)

// The embedded Istio YAML must be the seeds' files, unchanged.
func TestEmbeddedScenariosAreTheSeeds(t *testing.T) {
	for file, shared := range map[string]string{
		"destination-rule.yaml": "bill-service/destination-rule.yaml",
		"virtual-service.yaml":  "bill-service/virtual-service.yaml",
		"canary.yaml":           "canary/canary.yaml",
		"fault-injection.yaml":  "canary/fault-injection.yaml",
	} {
		t.Run(file, func(t *testing.T) {
			got, err := scenarios.ReadFile("scenarios/" + file)
			if err != nil {
				t.Fatal(err)
			}
			res, err := config.Parse(got, file)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if len(res.Resources) == 0 {
				t.Errorf("got no resources from %s", file)
			}
			want, err := os.ReadFile("/work/shared/scenarios/" + shared)
			if err != nil {
				t.Skipf("shared scenarios not on this machine: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("scenarios/%s differs from the seed's %s", file, shared)
			}
		})
	}
}

func TestSpec(t *testing.T) {
	s, err := Spec("/opt/bin/trellis")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.Workloads); got != 5 {
		t.Errorf("got %d workloads, want 5", got)
	}
	if got := s.Workloads[1].Command[0]; got != "/opt/bin/trellis" {
		t.Errorf("command: got %q, want the trellis path", got)
	}
}

// fakeMesh answers like a mesh that applies the config objects it is
// given (object file -> the scenario file it came from).
type fakeMesh struct {
	objs   map[string]string
	ignore string // a scenario file whose effect never shows (a broken mesh)
}

const (
	billVS   = "virtualservice-istio-demo-vs-bill-service.yaml"
	billDR   = "destinationrule-istio-demo-dest-bill-service.yaml"
	canaryVS = "virtualservice-default-canary.yaml"
	canaryDR = "destinationrule-default-canary.yaml"
)

func (f *fakeMesh) load(_ context.Context, calls, _ int, header, url string) (demoapp.Result, error) {
	r := demoapp.Result{Calls: calls, Answers: map[string]int{}, Status: map[int]int{}, P50ms: 1, P99ms: 2, MinMs: 0.5, MaxMs: 3}
	has := func(obj, file string) bool { return f.objs[obj] == file && f.ignore != file }
	switch url {
	case billURL:
		if has(billVS, "virtual-service.yaml") && has(billDR, "destination-rule.yaml") {
			r.Answers[BillV2] = calls / 10
		} else {
			r.Answers[BillV2] = calls / 2
		}
		r.Answers[BillV1] = calls - r.Answers[BillV2]
	case canaryURL:
		jesse := header == "user: jesse"
		subsets := has(canaryDR, "canary.yaml")
		switch {
		case f.objs[canaryVS] != "" && !subsets:
			r.Answers["HTTP 503"] = calls // routes to subsets nobody defines
		case has(canaryVS, "fault-injection.yaml") && jesse:
			r.Answers[CanaryV2] = calls
			r.MinMs, r.P50ms, r.P99ms, r.MaxMs = 5001, 5002, 5010, 5010
		case has(canaryVS, "fault-injection.yaml"):
			r.Answers[Abort] = calls / 2
			r.Answers[CanaryV1] = calls - calls/2
		case has(canaryVS, "canary.yaml") && jesse:
			r.Answers[CanaryV2] = calls
		case has(canaryVS, "canary.yaml"):
			r.Answers[CanaryV1] = calls
		default:
			r.Answers[CanaryV1] = calls / 2
			r.Answers[CanaryV2] = calls - calls/2
		}
	default:
		return r, errors.New("unknown url " + url)
	}
	return r, nil
}

func newFakeDemo(f *fakeMesh, out *bytes.Buffer) *demo {
	return &demo{
		opts: Options{Calls: 1000, DelayCalls: 10},
		out:  out,
		load: f.load,
		apply: func(file string) error {
			objs, err := manifest(file)
			for _, o := range objs {
				f.objs[o.File()] = file
			}
			return err
		},
		remove: func(file string) error {
			objs, err := manifest(file)
			for _, o := range objs {
				delete(f.objs, o.File())
			}
			return err
		},
		convergeTimeout: 300 * time.Millisecond,
	}
}

func TestScenariosStepsAndChecks(t *testing.T) {
	var out bytes.Buffer
	d := newFakeDemo(&fakeMesh{objs: map[string]string{}}, &out)
	if err := d.scenarios(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.summary()
	var names []string
	for _, s := range d.report.Steps {
		names = append(names, s.Name)
	}
	if got, want := strings.Join(names, ","), "even,weighted,canary-jesse,canary-others,fault-delay,fault-abort,even-again"; got != want {
		t.Errorf("steps: got %s, want %s", got, want)
	}
	for _, c := range d.report.Checks {
		if !c.OK {
			t.Errorf("check %q: got %s, want %s", c.Name, c.Got, c.Want)
		}
	}
	if got := len(d.report.Checks); got != 10 {
		t.Errorf("got %d checks, want 10", got)
	}
	for _, want := range []string{"[1/6] no mesh rules", "[6/6] summary", "this is bill-service-v1", "latency p50 1.0 ms  p99 2.0 ms", "min 5.00 s, 100% v2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if d.report.Step("fault-delay").Result.Calls != 10 {
		t.Errorf("delay step: got %d calls, want 10", d.report.Step("fault-delay").Result.Calls)
	}
}

func TestScenariosFailWhenConfigHasNoEffect(t *testing.T) {
	var out bytes.Buffer
	d := newFakeDemo(&fakeMesh{objs: map[string]string{}, ignore: "virtual-service.yaml"}, &out)
	err := d.scenarios(context.Background())
	if !errors.Is(err, errNotConverged) || !strings.Contains(err.Error(), "90/10") {
		t.Errorf("got %v, want the 90/10 split not converging", err)
	}
}

func TestSummaryFlagsWrongShares(t *testing.T) {
	var out bytes.Buffer
	d := newFakeDemo(&fakeMesh{objs: map[string]string{}}, &out)
	d.report.Steps = []Step{{Name: "weighted", Result: demoapp.Result{Calls: 1000, Answers: map[string]int{BillV1: 860, BillV2: 140}}}}
	d.summary()
	for _, c := range d.report.Checks {
		if c.OK {
			t.Errorf("check %q: got ok for 86/14, want a failure", c.Name)
		}
	}
	if !strings.Contains(out.String(), "NO") {
		t.Errorf("summary does not show the failure:\n%s", out.String())
	}
}

func TestSplitManifest(t *testing.T) {
	objs, err := manifest("canary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.File())
	}
	if want := canaryVS + "," + canaryDR; strings.Join(got, ",") != want {
		t.Errorf("got %v, want %s", got, want)
	}
	if !strings.Contains(objs[1].Text, "kind: DestinationRule") || strings.Contains(objs[1].Text, "kind: VirtualService") {
		t.Errorf("second object text: got %q, want the DestinationRule only", objs[1].Text)
	}
	for _, bad := range []string{"kind: X\nmetadata: {}\n", "kind: [\n"} {
		if _, err := splitManifest([]byte(bad)); err == nil {
			t.Errorf("splitManifest(%q): got nil error, want one", bad)
		}
	}
}
