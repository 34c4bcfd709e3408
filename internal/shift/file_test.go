package shift

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
)

var worker = Ref{Namespace: "default", Name: "worker-virtual-service"}

// weightsIn parses dir's files as trellisd would and returns the weights of
// ref's first HTTP route, by subset.
func weightsIn(t *testing.T, path string, ref Ref) map[string]int32 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := config.Parse(data, path)
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("parse %s: %v %v", path, err, res.Errors)
	}
	for _, r := range res.Resources {
		if r.Kind == config.KindVirtualService && r.Namespace == ref.Namespace && r.Name == ref.Name {
			out := map[string]int32{}
			for _, d := range r.Spec.(*networkingv1alpha3.VirtualService).GetHttp()[0].GetRoute() {
				out[d.GetDestination().GetSubset()] = d.GetWeight()
			}
			return out
		}
	}
	t.Fatalf("%s: no virtual service %s", path, ref)
	return nil
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFileApplierKeepsTheRestOfTheFile rewrites the scenario's 50/50 file
// (VirtualService + DestinationRule + comment) and checks that only the two
// weight values changed.
func TestFileApplierKeepsTheRestOfTheFile(t *testing.T) {
	orig, err := os.ReadFile("testdata/worker-virtualservice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := writeFile(t, dir, "worker.yaml", string(orig))
	a := &FileApplier{Dir: dir}
	ctx := context.Background()

	changed, err := a.Apply(ctx, worker, "burst")
	if err != nil || !changed {
		t.Fatalf("apply burst: got %v, %v; want true, nil", changed, err)
	}
	got, _ := os.ReadFile(path)
	want := strings.Replace(strings.Replace(string(orig), "weight: 50", "weight: 0", 1), "weight: 50", "weight: 100", 1)
	if string(got) != want {
		t.Errorf("after burst:\ngot:\n%s\nwant:\n%s", got, want)
	}
	if w := weightsIn(t, path, worker); w["primary"] != 0 || w["burst"] != 100 {
		t.Errorf("weights after burst: got %v, want primary 0, burst 100", w)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode: got %v, want 0640", st.Mode().Perm())
	}

	changed, err = a.Apply(ctx, worker, "burst")
	if err != nil || changed {
		t.Fatalf("apply burst again: got %v, %v; want false, nil", changed, err)
	}
	if again, _ := os.ReadFile(path); string(again) != want {
		t.Errorf("a second burst rewrote the file")
	}

	if _, err := a.Apply(ctx, worker, "primary"); err != nil {
		t.Fatal(err)
	}
	if w := weightsIn(t, path, worker); w["primary"] != 100 || w["burst"] != 0 {
		t.Errorf("weights after natural: got %v, want primary 100, burst 0", w)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only worker.yaml (no temp files left)", len(entries))
	}
}

func TestFileApplierCases(t *testing.T) {
	const other = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: worker-virtual-service
  namespace: staging
spec:
  hosts: [worker-service]
  http:
  - route:
    - destination: {host: worker-service, subset: primary}
      weight: 50
    - destination: {host: worker-service, subset: burst}
      weight: 50
`
	tests := []struct {
		name      string
		files     map[string]string
		subset    string
		wantErr   string
		wantFile  string
		want      map[string]int32
		untouched string // file that must keep its bytes
	}{
		{
			name: "missing weights are added",
			files: map[string]string{"vs.yaml": `# shifted by trellis shift
kind: VirtualService
apiVersion: networking.istio.io/v1
metadata:
  name: worker-virtual-service
spec:
  hosts:
  - worker-service
  http:
  - route:
    - destination:
        host: worker-service
        subset: primary
    - destination:
        host: worker-service
        subset: burst
`},
			subset: "burst", wantFile: "vs.yaml", want: map[string]int32{"primary": 0, "burst": 100},
		},
		{
			name:   "quoted and flow weights",
			files:  map[string]string{"vs.yml": strings.Replace(strings.Replace(other, "weight: 50", `weight: "50"`, 1), "namespace: staging", "namespace: default", 1)},
			subset: "burst", wantFile: "vs.yml", want: map[string]int32{"primary": 0, "burst": 100},
		},
		{
			name: "other namespace and documents untouched",
			files: map[string]string{
				"a-staging.yaml": other,
				"b-worker.yaml":  "# redis\napiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: redis\nspec:\n  hosts: [redis]\n  tcp:\n  - route:\n    - destination: {host: redis}\n---\n" + other[:strings.Index(other, "  namespace: staging\n")] + other[strings.Index(other, "spec:"):],
			},
			subset: "burst", wantFile: "b-worker.yaml", want: map[string]int32{"primary": 0, "burst": 100}, untouched: "a-staging.yaml",
		},
		{
			name:    "not found",
			files:   map[string]string{"a.yaml": other},
			subset:  "burst",
			wantErr: "virtual service default/worker-virtual-service: not found",
		},
		{
			name:    "no such subset",
			files:   map[string]string{"a.yaml": strings.Replace(other, "namespace: staging", "namespace: default", 1)},
			subset:  "overflow",
			wantErr: `no spec.http[].route[] destination with subset "overflow"`,
		},
		{
			name:    "subset twice in one route",
			files:   map[string]string{"a.yaml": strings.Replace(strings.Replace(other, "namespace: staging", "namespace: default", 1), "subset: primary", "subset: burst", 1)},
			subset:  "burst",
			wantErr: `spec.http[0]: route[0] and route[1] both have subset "burst"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, text := range tc.files {
				writeFile(t, dir, n, text)
			}
			_, err := (&FileApplier{Dir: dir}).Apply(context.Background(), worker, tc.subset)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				for n, text := range tc.files {
					if got, _ := os.ReadFile(filepath.Join(dir, n)); string(got) != text {
						t.Errorf("%s changed after a failed apply", n)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := weightsIn(t, filepath.Join(dir, tc.wantFile), worker)
			for s, want := range tc.want {
				if w[s] != want {
					t.Errorf("weight of %s: got %d, want %d", s, w[s], want)
				}
			}
			if tc.untouched != "" {
				if got, _ := os.ReadFile(filepath.Join(dir, tc.untouched)); string(got) != tc.files[tc.untouched] {
					t.Errorf("%s changed:\n%s", tc.untouched, got)
				}
			}
			// Everything before the VirtualService's weights is kept byte
			// for byte (comments, other documents, key order).
			in := tc.files[tc.wantFile]
			got, _ := os.ReadFile(filepath.Join(dir, tc.wantFile))
			if keep := in[:strings.Index(in, "  http:")]; !strings.HasPrefix(string(got), keep) {
				t.Errorf("head of %s changed:\ngot:\n%s\nwant prefix:\n%s", tc.wantFile, got, keep)
			}
		})
	}
}

func TestSplitDocsRoundTrip(t *testing.T) {
	for _, in := range []string{"", "a: 1\n", "a: 1\n---\nb: 2\n", "---\na: 1\n--- # c\nb: 2", "a: |\n  ---x\n"} {
		var got strings.Builder
		for _, c := range splitDocs([]byte(in)) {
			got.Write(c.text)
		}
		if got.String() != in {
			t.Errorf("splitDocs(%q) joined: got %q", in, got.String())
		}
	}
}
