package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/internal/trellisd"
	"github.com/trellis-mesh/trellis/internal/xds/server/fakeproxy"
)

func runProxyStatusCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := Root()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestProxyStatusGolden(t *testing.T) {
	body, err := os.ReadFile("testdata/proxystatus/syncz.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/syncz" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	cases := []struct {
		name   string
		args   []string
		golden string
		err    string
	}{
		{"all", []string{"proxy-status", "--trellisd-address", srv.URL}, "all.golden", ""},
		{"filter by name", []string{"proxy-status", "--trellisd-address", srv.URL, "front-tomcat"}, "filtered.golden", ""},
		{"no match", []string{"proxy-status", "--trellisd-address", srv.URL, "nothing-here"}, "", `no connected proxy matches "nothing-here"`},
		{"unreachable", []string{"proxy-status", "--trellisd-address", "127.0.0.1:1"}, "", "set --trellisd-address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runProxyStatusCLI(t, tc.args...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata/proxystatus", tc.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// proxy-status against a real trellisd with a real ADS client.
func TestProxyStatusAgainstTrellisd(t *testing.T) {
	dir := t.TempDir()
	cfg := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bill, namespace: shop}
spec:
  hosts: [bill.shop.svc.cluster.local]
  addresses: [240.240.0.20]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9999, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: 19999}}]
`
	if err := os.WriteFile(filepath.Join(dir, "bill.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := make(chan *trellisd.Server, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- trellisd.Run(ctx, trellisd.Options{ConfigDir: dir, XDSAddress: "127.0.0.1:0", DebugAddress: "127.0.0.1:0",
			Logf: t.Logf, Ready: func(s *trellisd.Server) { ready <- s }})
	}()
	defer func() {
		cancel()
		<-done
	}()
	var s *trellisd.Server
	select {
	case s = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(s.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "shop", "ISTIO_VERSION": "test-1"})
	node := &corev3.Node{Id: "sidecar~10.2.2.2~front-1.shop~shop.svc.cluster.local", Cluster: "front.shop", Metadata: md}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	c, err := fakeproxy.Dial(wctx, cc, node, fakeproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Wait(wctx, func(h fakeproxy.Held) bool {
		return h.Count(resourcev3.ClusterType) > 0 && h.Count(resourcev3.EndpointType) > 0 && h.Count(resourcev3.RouteType) > 0
	}); err != nil {
		t.Fatal(err)
	}
	want := "front-1.shop   front.shop   SYNCED   SYNCED   SYNCED   SYNCED"
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := runProxyStatusCLI(t, "proxy-status", "--trellisd-address", s.DebugAddr())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, want) && strings.Contains(out, "test-1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got:\n%s\nwant a line with %q and proxy version test-1", out, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
