package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// pathServer answers with its name and the path it got.
func pathServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func service(ns, name, addr string, octet int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  hosts: [%[2]s.%[1]s.svc.cluster.local]
  addresses: [240.240.1.%[4]d]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: %[2]s}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %[2]s-1, namespace: %[1]s}
spec:
  address: 127.0.0.1
  ports: {http: %[3]s}
  labels: {app: %[2]s}
`, ns, name, port(addr), octet)
}

// TestSimpleGateway is scenario simple-gateway through a router proxy:
// Host simple.zhongmingmao.io on port 80 reaches simple, other hosts get
// 404; with istio-specs-l7.yaml /simple/hello is rewritten to /hello and
// /nginx/... goes to nginx.
func TestSimpleGateway(t *testing.T) {
	dir := t.TempDir()
	simple, nginx := pathServer(t, "simple"), pathServer(t, "nginx")
	writeConfig(t, dir, "services.yaml", service("simple", "simple", simple, 1)+"---\n"+service("simple", "nginx", nginx, 2), nil)
	writeConfig(t, dir, "istio-specs.yaml", scenario(t, "simple-gateway/istio-specs.yaml"), nil)
	td := startTrellisd(t, dir, "")
	gw := freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--type", "router", "--ip", "127.0.0.1",
		"--pod-name", "istio-ingressgateway-5d8c", "--namespace", "istio-system", "--labels", "istio=ingressgateway",
		"--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", "0.0.0.0:80="+gw, "--drain-duration", "1s")
	c := &http.Client{Timeout: 5 * time.Second}
	get := func(host, path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+gw+path, nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	eventually(t, "gateway route", func() error {
		if code, body := get("simple.zhongmingmao.io", "/"); code != 200 || body != "simple /" {
			return fmt.Errorf("got %d %q", code, body)
		}
		return nil
	})
	if code, body := get("other.example.com", "/"); code != 404 {
		t.Errorf("other host: got %d %q, want 404", code, body)
	}

	// kubectl apply -f istio-specs-l7.yaml replaces the VirtualService; the
	// Gateway stays.
	specs := scenario(t, "simple-gateway/istio-specs.yaml")
	gateway := specs[strings.Index(specs, "apiVersion: networking.istio.io/v1beta1\nkind: Gateway"):]
	writeConfig(t, dir, "istio-specs.yaml", scenario(t, "simple-gateway/istio-specs-l7.yaml")+"---\n"+gateway, nil)
	eventually(t, "L7 rules", func() error {
		if code, body := get("simple.zhongmingmao.io", "/simple/hello"); code != 200 || body != "simple /hello" {
			return fmt.Errorf("got %d %q", code, body)
		}
		return nil
	})
	tests := []struct {
		path, want string
		code       int
	}{
		// prefix /nginx replaced by / keeps the rest: Envoy (and so Istio)
		// sends //index.html.
		{path: "/nginx/index.html", code: 200, want: "nginx //index.html"},
		{path: "/nginx", code: 200, want: "nginx /"},
		{path: "/simple/other", code: 404},
	}
	for _, tt := range tests {
		code, body := get("simple.zhongmingmao.io", tt.path)
		if code != tt.code || (tt.want != "" && body != tt.want) {
			t.Errorf("%s: got %d %q, want %d %q", tt.path, code, body, tt.code, tt.want)
		}
	}
}
