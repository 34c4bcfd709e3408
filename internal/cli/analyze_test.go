package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func init() {
	// Other golden tests in this package may define -update too.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files under testdata/")
	}
}

func analyzeUpdating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func runAnalyzeCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := Root()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"analyze"}, args...))
	err := root.Execute()
	return out.String(), err
}

// TestAnalyzeGolden runs `trellis analyze` on each testdata/analyze/<case>
// directory and compares the output with <case>.golden (refresh with
// go test ./internal/cli -run TestAnalyzeGolden -update).
func TestAnalyzeGolden(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"clean", []string{"-f", "testdata/analyze/clean"}, false},
		{"errors", []string{"-f", "testdata/analyze/errors/broken.yaml"}, true},
		{"warnings", []string{"testdata/analyze/warnings"}, false},
		{"json", []string{"-f", "testdata/analyze/json", "-o", "json"}, false},
		{"namespace flag", []string{"-f", "testdata/analyze/nonamespace", "--namespace", "shop"}, false},
		{"security not enforced", []string{"-f", "testdata/analyze/security"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runAnalyzeCLI(t, tc.args...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error: %v\n%s", err, tc.wantErr, out)
			}
			if err != nil {
				out += "error: " + err.Error() + "\n"
			}
			golden := filepath.Join("testdata", "analyze", strings.ReplaceAll(tc.name, " ", "-")+".golden")
			if analyzeUpdating() {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("got\n%s\nwant\n%s", out, want)
			}
		})
	}
}

func TestAnalyzeStdin(t *testing.T) {
	data, err := os.ReadFile("testdata/analyze/errors/broken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	root := Root()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetIn(bytes.NewReader(data))
	root.SetArgs([]string{"analyze", "-f", "-"})
	err = root.Execute()
	if err == nil || !strings.Contains(err.Error(), "11 errors") {
		t.Fatalf("got %v, want 11 errors", err)
	}
	if want := "Error (VirtualService default/reviews stdin#1) spec.http[0].route[0].weight: must be between 0 and 100, got 110"; !strings.Contains(out.String(), want) {
		t.Errorf("got\n%s\nwant a line\n%s", out.String(), want)
	}
}

func TestAnalyzeBadInvocation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no input", nil, "no input"},
		{"missing file", []string{"-f", "testdata/analyze/nope.yaml"}, "no such file"},
		{"bad output", []string{"-f", "testdata/analyze/clean", "-o", "xml"}, "want log or json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runAnalyzeCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// sharedScenarios finds shared/scenarios beside the repository root.
func sharedScenarios(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			s := filepath.Join(filepath.Dir(dir), "shared", "scenarios")
			if _, err := os.Stat(s); err != nil {
				t.Skipf("no shared/scenarios beside %s", dir)
			}
			return s
		}
		if filepath.Dir(dir) == dir {
			t.Skip("repository root not found")
		}
		dir = filepath.Dir(dir)
	}
}

func TestAnalyzeScenarios(t *testing.T) {
	root := sharedScenarios(t)
	dirs, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		n++
		t.Run(d.Name(), func(t *testing.T) {
			a, err := analyzeFiles([]string{filepath.Join(root, d.Name())}, "default", "cluster.local", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range a.result.Errors {
				t.Errorf("got error %s", e.String())
			}
			if d.Name() == "bill-service" && len(a.result.Warnings) != 0 {
				t.Errorf("got warnings %v for bill-service, want none", a.result.Warnings)
			}
		})
	}
	if n < 7 {
		t.Errorf("found %d scenario directories, want at least 7", n)
	}
}

func TestAnalyzeScenarioSubsetMissing(t *testing.T) {
	root := sharedScenarios(t)
	dir := t.TempDir()
	for _, f := range []string{"destination-rule.yaml", "workloads.yaml", "virtual-service.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "bill-service", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "virtual-service.yaml" {
			data = bytes.Replace(data, []byte("subset: v2"), []byte("subset: v3"), 1)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runAnalyzeCLI(t, "-f", dir)
	if err != nil {
		t.Fatalf("got error %v, want warnings only\n%s", err, out)
	}
	want := `Warning (VirtualService istio-demo/vs-bill-service ` + filepath.ToSlash(filepath.Join(dir, "virtual-service.yaml")) + `#1) spec.http[0].route[1].destination.subset: subset "v3" of host "bill-service.istio-demo.svc.cluster.local" is not defined by DestinationRule istio-demo/dest-bill-service (it defines "v1", "v2")`
	if !strings.Contains(out, want) {
		t.Errorf("got\n%s\nwant a line\n%s", out, want)
	}
}
