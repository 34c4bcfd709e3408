package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const authzGateway = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: productpage, port: {number: 80}}
`

// Istio's documented AuthorizationPolicy examples, at the ingress gateway.
const (
	allowNothing = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
`
	bookinfoPolicies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-productpage, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: ALLOW
  rules:
  - to: [{operation: {methods: [GET], paths: [/productpage, "/static/*"]}}]
  - from: [{source: {ipBlocks: [127.0.0.0/8]}}]
    to: [{operation: {paths: [/internal]}}]
  - from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]
    to: [{operation: {paths: [/partner]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-token, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - when:
    - key: request.headers[x-token]
      values: [blocked]
  - to: [{operation: {methods: [DELETE]}}]
`
)

// TestAuthorizationPolicyAtGateway applies Istio's documented
// AuthorizationPolicy examples to a real trellis-proxy gateway configured
// by trellisd from a config directory: allow-nothing answers 403 "RBAC:
// access denied", an ALLOW by method and path admits only GET
// /productpage and /static/*, ipBlocks and remoteIpBlocks match the
// client's address (x-forwarded-for from an untrusted client does not
// count), a DENY on a header or a method decides before any ALLOW, and
// every denial names its policy in the access log and the debug log.
func TestAuthorizationPolicyAtGateway(t *testing.T) {
	dir := t.TempDir()
	accessLog := filepath.Join(t.TempDir(), "access.log")
	app := pathServer(t, "productpage")
	writeConfig(t, dir, "services.yaml", service("default", "productpage", app, 30)+"---\n"+authzGateway, nil)
	td := startTrellisd(t, dir, accessLog)
	gw := freePort(t)
	proxy := startProxy(t, "--xds-address", td.XDSAddr(), "--type", "router", "--ip", "127.0.0.1",
		"--pod-name", "istio-ingressgateway-5d8c", "--namespace", "istio-system", "--labels", "istio=ingressgateway",
		"--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", "0.0.0.0:80="+gw, "--drain-duration", "1s", "--log-level", "debug")
	c := &http.Client{Timeout: 5 * time.Second}
	do := func(method, path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+gw+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	eventually(t, "gateway route without policies", func() error {
		if code, body := do("POST", "/anything", nil); code != 200 || body != "productpage /anything" {
			return fmt.Errorf("got %d %q", code, body)
		}
		return nil
	})
	// logged waits for an access log line containing every part.
	logged := func(parts ...string) {
		t.Helper()
		eventually(t, "access log line "+strings.Join(parts, " "), func() error {
			for _, l := range readLines(accessLog) {
				ok := true
				for _, p := range parts {
					ok = ok && strings.Contains(l, p)
				}
				if ok {
					return nil
				}
			}
			return fmt.Errorf("no line with %q", parts)
		})
	}

	writeConfig(t, dir, "authz.yaml", allowNothing, nil)
	eventually(t, "allow-nothing", func() error {
		if code, body := do("GET", "/productpage", nil); code != 403 || body != "RBAC: access denied" {
			return fmt.Errorf("got %d %q, want 403 RBAC: access denied", code, body)
		}
		return nil
	})
	logged(`"GET /productpage HTTP/1.1" 403 RBAC rbac_access_denied_matched_policy[none]`)

	writeConfig(t, dir, "authz.yaml", bookinfoPolicies, nil)
	const denyToken = "rbac_access_denied_matched_policy[ns[istio-system]-policy[deny-token]-rule[0]]"
	const denyDelete = "rbac_access_denied_matched_policy[ns[istio-system]-policy[deny-token]-rule[1]]"
	eventually(t, "bookinfo policies", func() error {
		if code, body := do("GET", "/productpage", nil); code != 200 || body != "productpage /productpage" {
			return fmt.Errorf("got %d %q", code, body)
		}
		return nil
	})
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		code               int
		details            string
	}{
		{"allowed method and path", "GET", "/productpage", nil, 200, "via_upstream"},
		{"allowed path wildcard", "GET", "/static/app.css", nil, 200, "via_upstream"},
		{"other method", "POST", "/productpage", nil, 403, "rbac_access_denied_matched_policy[none]"},
		{"other path", "GET", "/reviews", nil, 403, "rbac_access_denied_matched_policy[none]"},
		{"ipBlocks admits the client", "GET", "/internal", nil, 200, "via_upstream"},
		{"remoteIpBlocks excludes the client", "GET", "/partner", nil, 403, "rbac_access_denied_matched_policy[none]"},
		{"x-forwarded-for is not trusted at the edge", "GET", "/partner", map[string]string{"X-Forwarded-For": "203.0.113.7"}, 403, "rbac_access_denied_matched_policy[none]"},
		{"DENY on a header before ALLOW", "GET", "/productpage", map[string]string{"X-Token": "blocked"}, 403, denyToken},
		{"DENY on a method before ALLOW", "DELETE", "/internal", nil, 403, denyDelete},
	}
	for _, tt := range tests {
		code, body := do(tt.method, tt.path, tt.hdr)
		if code != tt.code {
			t.Errorf("%s: %s %s got %d %q, want %d", tt.name, tt.method, tt.path, code, body, tt.code)
			continue
		}
		if code == 403 && body != "RBAC: access denied" {
			t.Errorf("%s: body %q, want RBAC: access denied", tt.name, body)
		}
		flag := "-"
		if code == 403 {
			flag = "RBAC"
		}
		logged(fmt.Sprintf(`"%s %s HTTP/1.1" %d %s %s`, tt.method, tt.path, tt.code, flag, tt.details))
	}
	eventually(t, "debug log names the deciding policy", func() error {
		if !strings.Contains(proxy.out.String(), "rbac: GET /productpage from 127.0.0.1:") || !strings.Contains(proxy.out.String(), "enforced denied, "+denyToken) {
			return fmt.Errorf("trellis-proxy's debug log lacks the denial by deny-token")
		}
		return nil
	})
}

// TestAuthorizationPolicyTCPAtGateway is Istio's "authorization for TCP
// traffic" task at a gateway's TCP server: an ALLOW policy whose only
// rule uses an HTTP-only field (methods) admits no TCP connection, one on
// the port admits them, and a DENY on the client's ipBlocks closes them.
func TestAuthorizationPolicyTCPAtGateway(t *testing.T) {
	dir := t.TempDir()
	echo := tcpEcho(t)
	writeConfig(t, dir, "tcp.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo.default.svc.cluster.local]
  addresses: [240.240.1.40]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: tcp-echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: tcp-echo-1, namespace: default}
spec:
  address: 127.0.0.1
  ports: {tcp: `+port(echo)+`}
  labels: {app: tcp-echo}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tcp-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [tcp-gateway]
  tcp:
  - match: [{port: 31400}]
    route:
    - destination: {host: tcp-echo, port: {number: 9000}}
`, nil)
	td := startTrellisd(t, dir, "")
	gw := freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--type", "router", "--ip", "127.0.0.1",
		"--pod-name", "istio-ingressgateway-5d8c", "--namespace", "istio-system", "--labels", "istio=ingressgateway",
		"--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", "0.0.0.0:31400="+gw, "--drain-duration", "1s")
	echoed := func() error {
		c, err := net.DialTimeout("tcp", gw, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "hello\n"); err != nil {
			return err
		}
		b := make([]byte, 6)
		if _, err := io.ReadFull(c, b); err != nil {
			return fmt.Errorf("connection closed without the echo: %v", err)
		}
		return nil
	}
	closed := func() error {
		if err := echoed(); err == nil {
			return fmt.Errorf("got the echo, want the connection closed")
		}
		return nil
	}
	eventually(t, "tcp echo through the gateway", echoed)
	policy := func(spec string) {
		writeConfig(t, dir, "authz.yaml", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: tcp-policy, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n"+spec, nil)
	}
	policy("  action: ALLOW\n  rules:\n  - to: [{operation: {methods: [GET]}}]\n")
	eventually(t, "ALLOW with only an HTTP field denies TCP", closed)
	policy("  action: ALLOW\n  rules:\n  - to: [{operation: {methods: [GET]}}]\n  - to: [{operation: {ports: [\"31400\"]}}]\n")
	eventually(t, "ALLOW on the port", echoed)
	policy("  action: DENY\n  rules:\n  - from: [{source: {ipBlocks: [127.0.0.0/8]}}]\n")
	eventually(t, "DENY on the client's ipBlocks", closed)
}
