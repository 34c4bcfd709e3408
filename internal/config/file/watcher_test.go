package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellis-mesh/trellis/internal/config"
)

const vsTemplate = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %s
  namespace: demo
spec:
  hosts: [bill-service]
  http:
  - route:
    - destination: {host: bill-service, subset: v1}
      weight: %d
    - destination: {host: bill-service, subset: v2}
      weight: %d
`

func vsYAML(name string, w1 int) string { return fmt.Sprintf(vsTemplate, name, w1, 100-w1) }

const drYAML = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bill, namespace: demo}
spec:
  host: bill-service
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: v1
kind: Service
metadata: {name: bill-service, namespace: demo}
spec:
  ports: [{port: 9999, name: http}]
`

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Write then rename, as editors and kubectl cp do, so the watcher never
	// reads a half-written file.
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// state renders the store as "Kind/ns/name[detail]" lines, sorted.
func state(s *config.Store) string {
	var out []string
	for _, r := range s.Snapshot().All() {
		d := ""
		if vs, ok := r.Spec.(*networking.VirtualService); ok {
			d = fmt.Sprintf("[%d]", vs.GetHttp()[0].GetRoute()[0].GetWeight())
		}
		out = append(out, r.Key().String()+d)
	}
	for _, o := range s.Snapshot().KubeObjects() {
		out = append(out, o.Kind+"/"+o.Namespace+"/"+o.Name)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// eventually polls until the store reaches want (words in any order) or
// the deadline passes.
func eventually(t *testing.T, s *config.Store, want string) {
	t.Helper()
	words := strings.Fields(want)
	sort.Strings(words)
	want = strings.Join(words, " ")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := state(s)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store never reached\n  %s\nlast state\n  %s", want, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logBuf) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func start(t *testing.T, dir string) (*Watcher, *config.Store, *logBuf) {
	t.Helper()
	store := config.NewStore()
	logs := &logBuf{}
	w := New(dir, store, Options{Logf: logs.logf})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-w.Synced():
	case err := <-done:
		t.Fatalf("Run ended before sync: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("watcher never synced")
	}
	return w, store, logs
}

func TestWatcherLifecycle(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "dr.yaml"), drYAML)
	write(t, filepath.Join(dir, "routes", "vs.yaml"), vsYAML("vs", 90))
	write(t, filepath.Join(dir, "notes.txt"), "not config")
	w, store, logs := start(t, dir)

	base := "DestinationRule/demo/bill Service/demo/bill-service"
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"initial load", func() {}, base + " VirtualService/demo/vs[90]"},
		{"edit", func() { write(t, filepath.Join(dir, "routes", "vs.yaml"), vsYAML("vs", 50)) }, base + " VirtualService/demo/vs[50]"},
		{"add file", func() { write(t, filepath.Join(dir, "canary.yml"), vsYAML("canary", 10)) }, base + " VirtualService/demo/canary[10] VirtualService/demo/vs[50]"},
		{"invalid edit keeps last valid", func() { write(t, filepath.Join(dir, "routes", "vs.yaml"), vsYAML("vs", 150)) }, base + " VirtualService/demo/canary[10] VirtualService/demo/vs[50]"},
		{"fixed edit applies", func() { write(t, filepath.Join(dir, "routes", "vs.yaml"), vsYAML("vs", 70)) }, base + " VirtualService/demo/canary[10] VirtualService/demo/vs[70]"},
		{"delete file", func() { os.Remove(filepath.Join(dir, "canary.yml")) }, base + " VirtualService/demo/vs[70]"},
		{"new subdirectory", func() {
			write(t, filepath.Join(dir, "new", "deep", "x.json"), `{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"gw","namespace":"demo"},"spec":{"servers":[{"port":{"number":80,"name":"http","protocol":"HTTP"},"hosts":["*"]}]}}`)
		},
			base + " Gateway/demo/gw VirtualService/demo/vs[70]"},
		{"remove subdirectory", func() { os.RemoveAll(filepath.Join(dir, "new")) }, base + " VirtualService/demo/vs[70]"},
		{"in-place write", func() {
			os.WriteFile(filepath.Join(dir, "routes", "vs.yaml"), []byte(vsYAML("vs", 20)), 0o644)
		}, base + " VirtualService/demo/vs[20]"},
		{"delete everything", func() { os.Remove(filepath.Join(dir, "dr.yaml")); os.Remove(filepath.Join(dir, "routes", "vs.yaml")) }, ""},
	}
	for _, st := range steps {
		st.do()
		eventually(t, store, st.want)
		if st.name == "invalid edit keeps last valid" {
			// The rejection is reported with the field path.
			deadline := time.Now().Add(10 * time.Second)
			for len(w.Errors()) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			errs := w.Errors()["routes/vs.yaml"]
			if len(errs) == 0 {
				t.Fatalf("%s: got errors %v, want some for routes/vs.yaml", st.name, w.Errors())
			}
			if got, want := errs[0].String(), "routes/vs.yaml#1 VirtualService demo/vs: spec.http[0].route[0].weight: must be between 0 and 100, got 150"; got != want {
				t.Errorf("%s: got %q, want %q", st.name, got, want)
			}
			if !logs.contains("its last valid content keeps serving") {
				t.Errorf("%s: the rejection was not logged", st.name)
			}
		}
		if st.name == "fixed edit applies" && len(w.Errors()) != 0 {
			t.Errorf("%s: got errors %v after the fix, want none", st.name, w.Errors())
		}
	}
}

func TestWatcherInvalidFromStart(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bad.yaml"), "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: x}\nspec: {}\n")
	write(t, filepath.Join(dir, "good.yaml"), vsYAML("good", 100))
	w, store, _ := start(t, dir)
	eventually(t, store, "VirtualService/demo/good[100]")
	errs := w.Errors()["bad.yaml"]
	if len(errs) != 1 || errs[0].Field != "apiVersion" {
		t.Fatalf("got errors %v, want one at apiVersion for bad.yaml", w.Errors())
	}
	// Fixing the file brings it in.
	write(t, filepath.Join(dir, "bad.yaml"), vsYAML("x", 100))
	eventually(t, store, "VirtualService/demo/good[100] VirtualService/demo/x[100]")
	// A duplicate name inside one file is an error for that file only.
	write(t, filepath.Join(dir, "dup.yaml"), vsYAML("d", 100)+"---\n"+vsYAML("d", 100))
	deadline := time.Now().Add(10 * time.Second)
	for w.Errors()["dup.yaml"] == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if errs := w.Errors()["dup.yaml"]; len(errs) != 1 || !strings.Contains(errs[0].Message, "already defined in dup.yaml#1") {
		t.Errorf("got %v, want a duplicate-name error", errs)
	}
	if got, want := state(store), "VirtualService/demo/good[100] VirtualService/demo/x[100]"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestWatcherConfigMapSymlinks(t *testing.T) {
	// Kubernetes ConfigMap volumes: files are symlinks into a "..data"
	// directory that is swapped atomically on update.
	dir := t.TempDir()
	v1 := filepath.Join(dir, "..2026_v1")
	write(t, filepath.Join(v1, "vs.yaml"), vsYAML("vs", 90))
	if err := os.Symlink("..2026_v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "vs.yaml"), filepath.Join(dir, "vs.yaml")); err != nil {
		t.Fatal(err)
	}
	_, store, _ := start(t, dir)
	eventually(t, store, "VirtualService/demo/vs[90]")

	v2 := filepath.Join(dir, "..2026_v2")
	write(t, filepath.Join(v2, "vs.yaml"), vsYAML("vs", 30))
	if err := os.Symlink("..2026_v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	eventually(t, store, "VirtualService/demo/vs[30]")
}

func TestLoadMissingDir(t *testing.T) {
	w := New(filepath.Join(t.TempDir(), "nope"), config.NewStore(), Options{})
	err := w.Load()
	if err == nil || !strings.Contains(err.Error(), "config dir") {
		t.Errorf("got %v, want a config dir error", err)
	}
}

func TestLoadSharedScenarios(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "..", "shared", "scenarios")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared scenarios not found at %s", dir)
	}
	store := config.NewStore()
	w := New(dir, store, Options{})
	if err := w.Load(); err != nil {
		t.Fatal(err)
	}
	if errs := w.Errors(); len(errs) != 0 {
		t.Errorf("got errors %v, want none", errs)
	}
	if got := store.Snapshot().Len(); got < 10 {
		t.Errorf("got %d resources from the scenarios, want at least 10", got)
	}
	if got := len(store.Snapshot().KubeObjects()); got < 10 {
		t.Errorf("got %d Kubernetes objects from the scenarios, want at least 10", got)
	}
}

func TestWatcherCrossWarnings(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "dr.yaml"), drYAML)
	write(t, filepath.Join(dir, "vs.yaml"), strings.Replace(vsYAML("vs", 90), "subset: v2", "subset: v3", 1))
	w, store, logs := start(t, dir)
	eventually(t, store, "DestinationRule/demo/bill Service/demo/bill-service VirtualService/demo/vs[90]")
	warns := w.Warnings()["vs.yaml"]
	if len(warns) != 1 || warns[0].Field != "spec.http[0].route[1].destination.subset" || !strings.Contains(warns[0].Message, `subset "v3"`) {
		t.Fatalf("got warnings %v, want one about subset v3", w.Warnings())
	}
	if !logs.contains(`subset "v3"`) {
		t.Error("the warning was not logged")
	}
	// Defining the subset clears it.
	write(t, filepath.Join(dir, "dr.yaml"), strings.Replace(drYAML, "- {name: v2, labels: {version: v2}}", "- {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: v3}}", 1))
	deadline := time.Now().Add(10 * time.Second)
	for len(w.Warnings()["vs.yaml"]) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("warnings never cleared: %v", w.Warnings())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatcherConflictWarning(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), vsYAML("vs", 90))
	write(t, filepath.Join(dir, "b.yaml"), vsYAML("vs", 10))
	w, store, _ := start(t, dir)
	eventually(t, store, "VirtualService/demo/vs[10]")
	warns := w.Warnings()["b.yaml"]
	found := false
	for _, is := range warns {
		if is.Field == "metadata.name" && strings.Contains(is.Message, "also defined in a.yaml#1") {
			found = true
		}
	}
	if !found {
		t.Errorf("got warnings %v, want b.yaml to say vs is also defined in a.yaml", w.Warnings())
	}
	os.Remove(filepath.Join(dir, "b.yaml"))
	eventually(t, store, "VirtualService/demo/vs[90]")
	deadline := time.Now().Add(10 * time.Second)
	for len(w.Warnings()["b.yaml"]) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("conflict warning never cleared: %v", w.Warnings())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
