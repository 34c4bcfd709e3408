package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/local"
)

// The fixtures are the admin server's own golden output: a real xDS client
// and cluster manager fed by a real ADS server (internal/proxy/admin tests).
const (
	dumpFixture     = "../proxy/admin/testdata/config_dump.golden.json"
	clustersFixture = "../proxy/admin/testdata/clusters.golden.json"
)

func fakeAdmin(t *testing.T) *httptest.Server {
	t.Helper()
	dump, err := os.ReadFile(dumpFixture)
	if err != nil {
		t.Fatal(err)
	}
	clusters, err := os.ReadFile(clustersFixture)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, r *http.Request) { w.Write(dump) })
	mux.HandleFunc("/clusters", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") != "json" {
			http.Error(w, "want format=json", 400)
			return
		}
		w.Write(clusters)
	})
	mux.HandleFunc("/logging", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Write([]byte("set " + r.URL.RawQuery + "\n"))
			return
		}
		w.Write([]byte("active loggers:\n  http: info\n"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func runPC(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := Root()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestProxyConfigGolden(t *testing.T) {
	srv := fakeAdmin(t)
	addr := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct {
		name string
		args []string
	}{
		{"listener", []string{"listener", addr}},
		{"listener-port-15006", []string{"listener", addr, "--port", "15006"}},
		{"route", []string{"route", addr}},
		{"route-name-80-json", []string{"route", addr, "--name", "80", "-o", "json"}},
		{"cluster", []string{"cluster", addr}},
		{"cluster-fqdn-subset", []string{"cluster", addr, "--fqdn", "nginx.sidecar.svc.cluster.local", "--subset", "v1"}},
		{"cluster-inbound-yaml", []string{"cluster", addr, "--direction", "inbound", "-o", "yaml"}},
		{"endpoint", []string{"endpoint", addr}},
		{"endpoint-cluster", []string{"endpoint", addr, "--cluster", "outbound|80||nginx.sidecar.svc.cluster.local"}},
		{"bootstrap", []string{"bootstrap", addr}},
		{"secret", []string{"secret", addr}},
		{"all", []string{"all", addr}},
		{"admin-address-flag", []string{"cluster", "--admin-address", addr, "--port", "6379"}},
		{"file-endpoint", []string{"endpoint", "--file", dumpFixture, "--port", "80"}},
		{"file-listener", []string{"listener", "-f", dumpFixture, "--port", "6379"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runPC(t, append([]string{"proxy-config"}, tt.args...)...)
			if err != nil {
				t.Fatalf("got error %v\n%s", err, got)
			}
			golden := filepath.Join("testdata", "proxyconfig", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestProxyConfigContent(t *testing.T) {
	srv := fakeAdmin(t)
	addr := strings.TrimPrefix(srv.URL, "http://")
	// The sidecar-basic scenario: the outbound nginx cluster and its endpoint.
	out, err := runPC(t, "proxy-config", "cluster", addr, "--fqdn", "nginx.sidecar.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "nginx.sidecar.svc.cluster.local") || !strings.Contains(out, "outbound") || !strings.Contains(out, "nginx.sidecar\n") {
		t.Errorf("got %q, want the nginx clusters with their DestinationRule", out)
	}
	out, _ = runPC(t, "proxy-config", "endpoint", addr, "--cluster", "outbound|80||nginx.sidecar.svc.cluster.local")
	if !strings.Contains(out, "10.1.0.5:80") || !strings.Contains(out, "HEALTHY") || !strings.Contains(out, "OK") {
		t.Errorf("got %q, want endpoint 10.1.0.5:80 HEALTHY OK", out)
	}
	out, _ = runPC(t, "proxy-config", "listener", addr, "--port", "80", "-o", "json")
	var ls []map[string]any
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) != 1 || ls[0]["name"] != "0.0.0.0_80" {
		t.Errorf("got %v %v, want one listener 0.0.0.0_80 as JSON", ls, err)
	}
}

func TestProxyConfigLog(t *testing.T) {
	addr := strings.TrimPrefix(fakeAdmin(t).URL, "http://")
	tests := []struct{ args, want string }{
		{"", "active loggers:\n  http: info\n"},
		{"--level debug", "set level=debug\n"},
		{"--level http:trace,xds:error", "set http=trace&xds=error\n"},
	}
	for _, tt := range tests {
		args := append([]string{"proxy-config", "log", addr}, strings.Fields(tt.args)...)
		got, err := runPC(t, args...)
		if err != nil || got != tt.want {
			t.Errorf("%v: got %q %v, want %q", tt.args, got, err, tt.want)
		}
	}
}

func TestProxyConfigStateFile(t *testing.T) {
	srv := fakeAdmin(t)
	dir := t.TempDir()
	st := local.State{Prefix: "t", Workloads: []local.StateWorkload{
		{Name: "sleep", Namespace: "sidecar", IP: "10.1.0.9", AdminAddress: strings.TrimPrefix(srv.URL, "http://")},
	}}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, "local-t.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"sleep", "sleep.sidecar"} {
		out, err := runPC(t, "proxy-config", "cluster", target, "--state-dir", dir, "--fqdn", "PassthroughCluster")
		if err != nil || !strings.Contains(out, "ORIGINAL_DST") {
			t.Errorf("%s: got %q %v, want the PassthroughCluster row", target, out, err)
		}
	}
	_, err := runPC(t, "proxy-config", "cluster", "nope", "--state-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "known workloads: sleep.sidecar") {
		t.Errorf("got %v, want an error listing the known workloads", err)
	}
}

func TestProxyConfigErrors(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad output", []string{"cluster", "127.0.0.1:1", "-o", "xml"}, `--output "xml"`},
		{"bad direction", []string{"cluster", "127.0.0.1:1", "--direction", "up"}, `--direction "up"`},
		{"no mesh", []string{"cluster", "sleep", "--state-dir", empty}, "no local mesh is running"},
		{"unreachable", []string{"cluster", "127.0.0.1:1", "--timeout", "2s"}, "read the proxy's admin API"},
		{"file and target", []string{"cluster", "127.0.0.1:1", "--file", dumpFixture}, "either --file or a target"},
		{"missing file", []string{"cluster", "--file", "/nonexistent.json"}, "read config dump"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runPC(t, append([]string{"proxy-config"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}
