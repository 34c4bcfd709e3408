package proxy

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
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
