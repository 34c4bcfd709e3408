package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestAppProbesThroughTheBinary: the injector hands the rewritten probes to
// the sidecar in ISTIO_KUBE_APP_PROBERS; the trellis-proxy binary must read
// it and answer /app-health/... on its merged port (15020) by probing the
// app, HTTP and TCP alike.
func TestAppProbesThroughTheBinary(t *testing.T) {
	app := versionServer(t, "app") // answers 200 on every path
	closed := freePort(t)          // nothing listens here
	listen, merged := freePort(t), freePort(t)
	dir := t.TempDir()
	writeConfig(t, dir, "static.yaml", staticBootstrap, map[string]string{"LISTEN_PORT": port(listen), "BACKEND_PORT": port(app)})
	probers := fmt.Sprintf(`{"/app-health/web/livez":{"httpGet":{"path":"/healthz","port":%s,"scheme":"HTTP"},"timeoutSeconds":1},`+
		`"/app-health/web/readyz":{"tcpSocket":{"port":%s},"timeoutSeconds":1},`+
		`"/app-health/side/readyz":{"tcpSocket":{"port":%s},"timeoutSeconds":1}}`, port(app), port(app), port(closed))
	cmd := exec.Command(proxyBin, "-c", filepath.Join(dir, "static.yaml"), "--merged-address", merged)
	cmd.Env = append(os.Environ(), "ISTIO_KUBE_APP_PROBERS="+probers)
	startProxyCmd(t, cmd)
	waitHTTP(t, listen, "anything.example")

	c := &http.Client{Timeout: 5 * time.Second}
	for path, want := range map[string]int{
		"/app-health/web/livez":   200, // HTTP probe, app answers
		"/app-health/web/readyz":  200, // TCP probe, app listens
		"/app-health/side/readyz": 503, // TCP probe, nothing listens
		"/app-health/other/livez": 404, // no such probe
	} {
		resp, err := c.Get("http://" + merged + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s on the merged port: got %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestAppGRPCProbesThroughTheBinary: a gRPC probe the injector rewrote
// reaches the trellis-proxy binary as {"grpc": {"port", "service"}} in
// ISTIO_KUBE_APP_PROBERS; the binary answers /app-health/... on its merged
// port by making the grpc.health.v1 Health/Check against a real gRPC
// health server: 200 for SERVING, 503 for NOT_SERVING, for a service the
// server does not know, when nothing listens, and when the app accepts
// but never answers within timeoutSeconds.
func TestAppGRPCProbesThroughTheBinary(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("shop.Stock", healthpb.HealthCheckResponse_NOT_SERVING)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	// silent accepts connections and never says a word.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		silent.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	app, closed, merged := ln.Addr().String(), freePort(t), freePort(t)
	probers := fmt.Sprintf(`{"/app-health/stock/livez":{"grpc":{"port":%s,"service":null},"timeoutSeconds":1},`+
		`"/app-health/stock/readyz":{"grpc":{"port":%s,"service":"shop.Stock"},"timeoutSeconds":1},`+
		`"/app-health/stock/startupz":{"grpc":{"port":%s,"service":"shop.Unknown"}},`+
		`"/app-health/dead/livez":{"grpc":{"port":%s}},`+
		`"/app-health/mute/livez":{"grpc":{"port":%s},"timeoutSeconds":1}}`, port(app), port(app), port(app), port(closed), port(silent.Addr().String()))
	dir := t.TempDir()
	listen := freePort(t)
	writeConfig(t, dir, "static.yaml", staticBootstrap, map[string]string{"LISTEN_PORT": port(listen), "BACKEND_PORT": port(app)})
	cmd := exec.Command(proxyBin, "-c", filepath.Join(dir, "static.yaml"), "--merged-address", merged)
	cmd.Env = append(os.Environ(), "ISTIO_KUBE_APP_PROBERS="+probers)
	startProxyCmd(t, cmd)

	c := &http.Client{Timeout: 5 * time.Second}
	probe := func(path string) (int, string) {
		resp, err := c.Get("http://" + merged + path)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	eventually(t, "merged port", func() error {
		if code, body := probe("/app-health/stock/livez"); code != 200 {
			return fmt.Errorf("got %d %s", code, body)
		}
		return nil
	})
	for _, tt := range []struct {
		path, why string
		want      int
	}{
		{"/app-health/stock/livez", "the server is SERVING", 200},
		{"/app-health/stock/readyz", "shop.Stock is NOT_SERVING", 503},
		{"/app-health/stock/startupz", "the server does not know shop.Unknown", 503},
		{"/app-health/dead/livez", "nothing listens", 503},
		{"/app-health/mute/livez", "no answer within timeoutSeconds", 503},
	} {
		if code, body := probe(tt.path); code != tt.want {
			t.Errorf("GET %s (%s): got %d %s, want %d", tt.path, tt.why, code, body, tt.want)
		}
	}
	hs.SetServingStatus("shop.Stock", healthpb.HealthCheckResponse_SERVING)
	if code, body := probe("/app-health/stock/readyz"); code != 200 {
		t.Errorf("shop.Stock now SERVING: got %d %s, want 200", code, body)
	}
}
