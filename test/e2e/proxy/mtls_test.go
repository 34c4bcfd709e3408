package proxy

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// meshWorkloads is reviews, a real HTTP server behind its sidecar. There
// is no interception on 127.0.0.1, so the WorkloadEntry's port is where
// reviews' sidecar binds 15006 (--rebind): a client's sidecar reaches the
// app through reviews' sidecar. A rebound listener sees connections as
// sent to its configured address (:15006), so the Sidecar resource
// declares the inbound port as 15006 and points it at the app.
const meshWorkloads = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  addresses: [240.240.8.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: shop}
spec:
  address: 127.0.0.1
  serviceAccount: reviews
  ports: {http: {{INBOUND_PORT}}}
  labels: {app: reviews, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: shop}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 15006, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:{{APP_PORT}}
`

const peerAuthentication = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec:
  mtls: {mode: {{MODE}}}
`

// TestPeerAuthenticationThroughSidecars: real trellisd with its CA and two
// real trellis-proxy sidecars, each with its own local-mode credential.
// Under PeerAuthentication STRICT the client's sidecar reaches reviews
// over mesh mTLS (auto mTLS: the endpoint has tlsMode istio), while a
// plaintext client connecting straight to reviews' sidecar is refused;
// switched to PERMISSIVE, both get through. Reviews' sidecar labels the
// mTLS requests connection_security_policy="mutual_tls" with the source
// and destination principals of the two certificates; front's sidecar
// reports the same principals on the source side.
func TestPeerAuthenticationThroughSidecars(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.MkdirAll(cfg, 0o755)
	app := versionServer(t, "reviews")
	inbound := freePort(t)
	writeConfig(t, cfg, "workloads.yaml", meshWorkloads, map[string]string{"INBOUND_PORT": port(inbound), "APP_PORT": port(app)})
	writeConfig(t, cfg, "peer.yaml", peerAuthentication, map[string]string{"MODE": "STRICT"})

	front, _ := ca.NewToken()
	reviews, _ := ca.NewToken()
	creds := filepath.Join(dir, "workload-credentials")
	if err := ca.WriteCredentials(creds, map[string]ca.Caller{front: {Namespace: "shop", ServiceAccount: "front"}, reviews: {Namespace: "shop", ServiceAccount: "reviews"}}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root-cert.pem")
	caAddr := freePort(t)
	plane := &caPlane{t: t, opts: trellisd.Options{ConfigDir: cfg, XDSAddress: "127.0.0.1:0", Debounce: 10 * time.Millisecond,
		CAAddress: caAddr, CADir: filepath.Join(dir, "ca"), WorkloadCredentials: creds, CARootFile: root, Logf: func(string, ...any) {}}}
	plane.start()
	t.Cleanup(plane.stop)
	td := plane.server

	sidecar := func(name, sa, ip, token, rebind, prom string) string {
		admin := freePort(t)
		startProxyWithCredential(t, token, caAddr, root, nil, "--xds-address", td.XDSAddr(), "--ip", ip, "--pod-name", name, "--namespace", "shop",
			"--service-account", sa, "--labels", "app="+name, "--admin-address", admin,
			"--ready-address", "", "--prometheus-address", prom, "--merged-address", "", "--rebind", rebind, "--drain-duration", "1s", "--log-level", "debug")
		return admin
	}
	reviewsProm := freePort(t)
	reviewsAdmin := sidecar("reviews", "reviews", "127.0.0.1", reviews, fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", freePort(t), freePort(t), inbound), reviewsProm)
	outbound, frontProm := freePort(t), freePort(t)
	frontAdmin := sidecar("front", "front", "127.0.0.2", front, fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", outbound, freePort(t), freePort(t)), frontProm)

	get := func(addr string) error {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = "reviews.shop.svc.cluster.local"
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "reviews" {
			return fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return nil
	}
	eventually := func(what string, cond func() error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := cond()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				if resp, err := http.Get("http://" + reviewsAdmin + "/config_dump"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Logf("reviews' sidecar config:\n%s", b)
				}
				if resp, err := http.Get("http://" + frontAdmin + "/clusters"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Logf("front's clusters:\n%s", b)
				}
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	meshed := func() error { return get(outbound) }
	plaintext := func() error { return get(inbound) }
	refused := func() error {
		if err := plaintext(); err == nil {
			return fmt.Errorf("a plaintext client reached reviews")
		}
		return nil
	}

	// STRICT: only the mTLS chain serves reviews' port, and the meshed
	// client reaching the app proves its sidecar speaks mTLS.
	eventually("STRICT: meshed client", meshed)
	for i := 0; i < 5; i++ {
		if err := refused(); err != nil {
			t.Fatalf("STRICT: %v", err)
		}
		if err := meshed(); err != nil {
			t.Fatalf("STRICT: meshed client: %v", err)
		}
	}

	// Reviews' sidecar reports the six mTLS requests as Istio does, with
	// both identities from the certificates.
	if err := wantProm(reviewsProm, map[string]string{"reporter": "destination", "response_code": "200",
		"connection_security_policy": "mutual_tls",
		"source_principal":           "spiffe://cluster.local/ns/shop/sa/front",
		"destination_principal":      "spiffe://cluster.local/ns/shop/sa/reviews",
	}, map[string]float64{"istio_requests_total": 6}); err != nil {
		t.Errorf("STRICT: metrics: %v", err)
	}
	// So does front's, on the source side (the policy is not known there).
	if err := wantProm(frontProm, map[string]string{"reporter": "source", "response_code": "200",
		"connection_security_policy": "unknown",
		"source_principal":           "spiffe://cluster.local/ns/shop/sa/front",
		"destination_principal":      "spiffe://cluster.local/ns/shop/sa/reviews",
	}, map[string]float64{"istio_requests_total": 6}); err != nil {
		t.Errorf("STRICT: source metrics: %v", err)
	}

	writeConfig(t, cfg, "peer.yaml", peerAuthentication, map[string]string{"MODE": "PERMISSIVE"})
	eventually("PERMISSIVE: plaintext client", plaintext)
	if err := meshed(); err != nil {
		t.Fatalf("PERMISSIVE: meshed client: %v", err)
	}

	writeConfig(t, cfg, "peer.yaml", peerAuthentication, map[string]string{"MODE": "STRICT"})
	eventually("STRICT again: plaintext refused", refused)
	if err := meshed(); err != nil {
		t.Fatalf("STRICT again: meshed client: %v", err)
	}
}
