package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// injectedDrain is the --drain-duration the injector gives a pod
// annotated with proxy.istio.io/config.
func injectedDrain(t *testing.T, proxyConfig string) string {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "report", Annotations: map[string]string{inject.AnnProxyConfig: proxyConfig}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "report"}}}}
	out, err := inject.Pod(inject.DefaultConfig(), inject.Target{NativeSidecars: true}, pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range out.Spec.InitContainers {
		if c.Name != inject.ProxyContainerName {
			continue
		}
		for i, a := range c.Args {
			if a == "--drain-duration" && i+1 < len(c.Args) {
				return c.Args[i+1]
			}
		}
	}
	t.Fatalf("injected proxy has no --drain-duration: %+v", out.Spec.InitContainers)
	return ""
}

// TestSIGTERMDrainsInFlightRequests: the proxy, given the drain time the
// injector derived from the pod's terminationDrainDuration, lets a request
// in flight at SIGTERM finish and serves new outbound requests while it
// drains, then exits.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	drain := injectedDrain(t, "terminationDrainDuration: 4s")
	if drain != "4s" {
		t.Fatalf("injected --drain-duration: got %s, want 4s", drain)
	}

	// The upstream answers /slow only when released.
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "report "+r.URL.Path)
	})}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(bl)
	defer backend.Close()
	_, bport, _ := net.SplitHostPort(bl.Addr().String())

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "report.yaml"), []byte(fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: report, namespace: batch}
spec:
  hosts: [report.batch.svc.cluster.local]
  addresses: [240.240.9.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: report}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: report-1, namespace: batch}
spec:
  address: 127.0.0.1
  ports: {http: %s}
  labels: {app: report}
`, bport)), 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *trellisd.Server, 1)
	go trellisd.Run(ctx, trellisd.Options{ConfigDir: dir, XDSAddress: "127.0.0.1:0", Debounce: 10 * time.Millisecond,
		Logf: func(string, ...any) {}, Ready: func(s *trellisd.Server) { ready <- s }})
	var td *trellisd.Server
	select {
	case td = <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("trellisd not ready")
	}

	// The app's sidecar; SIGTERM is the cancellation of its context, as
	// main's signal.NotifyContext does.
	proxyCtx, sigterm := context.WithCancel(ctx)
	local := freeAddr(t)
	proxyDone := make(chan error, 1)
	go func() {
		cmd := rootCommand()
		cmd.SetArgs([]string{"--xds-address", td.XDSAddr(), "--ip", "127.0.0.2", "--pod-name", "client", "--namespace", "batch",
			"--labels", "app=client", "--admin-address", freeAddr(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
			"--rebind", "0.0.0.0:80=" + local + ",0.0.0.0:15001=" + freeAddr(t) + ",0.0.0.0:15006=" + freeAddr(t),
			"--drain-duration", drain})
		proxyDone <- cmd.ExecuteContext(proxyCtx)
	}()

	get := func(path string) (string, error) {
		req, _ := http.NewRequest("GET", "http://"+local+path, nil)
		req.Host = "report.batch.svc.cluster.local"
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := get("/fast")
		if err == nil && body == "report /fast" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no route through the sidecar: %q, %v", body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	inflight := make(chan string, 1)
	go func() {
		body, err := get("/slow")
		if err != nil {
			body = "error: " + err.Error()
		}
		inflight <- body
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the upstream")
	}
	sigterm()
	// The proxy keeps the request while it drains.
	select {
	case err := <-proxyDone:
		t.Fatalf("proxy exited with a request in flight (drain %s): %v", drain, err)
	case <-time.After(500 * time.Millisecond):
	}
	// The app keeps calling out while it finishes: a new outbound request
	// started during the drain is served.
	if body, err := get("/fast"); err != nil || body != "report /fast" {
		t.Errorf("new outbound request during the drain: got %q, %v; want report /fast", body, err)
	}
	close(release)
	select {
	case body := <-inflight:
		if body != "report /slow" {
			t.Errorf("in-flight request across SIGTERM: got %q, want report /slow", body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("in-flight request never answered")
	}
	select {
	case err := <-proxyDone:
		if err != nil && !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("proxy: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not exit after draining")
	}
}
