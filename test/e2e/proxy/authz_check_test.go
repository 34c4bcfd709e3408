package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/proxy/authz"
	"github.com/trellis-mesh/trellis/internal/proxy/failures"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// Istio's documented AuthorizationPolicy examples, on reviews' sidecar.
const (
	checkAllowNothing = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: shop}
spec: {}
`
	checkDenyNamespace = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-shop, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - from: [{source: {namespaces: [shop]}}]
`
	checkAllowFront = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-front, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/other/sa/nobody]}}]
  - from: [{source: {principals: [cluster.local/ns/shop/sa/front]}}]
    to: [{operation: {methods: [GET], paths: ["/info*"]}}]
`
	checkDenySecret = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-secret, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/info/secret]}}]
`
)

// TestAuthzCheckMatchesRequests runs real trellisd with its CA, reviews
// behind a real trellis-proxy sidecar and front's sidecar as a meshed
// client (PERMISSIVE: plain-text clients reach reviews' sidecar too), and
// applies Istio's documented AuthorizationPolicy examples one after the
// other: allow-nothing, a DENY by source namespace, an ALLOW by principal,
// method and path, and a DENY that decides before that ALLOW. For each
// request it asks the real `trellis authz check` about the same request
// against reviews' sidecar and sends it for real, through front's sidecar
// (principal spiffe://cluster.local/ns/shop/sa/front) or in plain text:
// the CLI's verdict is what the request gets, 200 or 403, and for a 403
// its response code details are those reviews' sidecar recorded. Without
// a request, the CLI lists the policies the sidecar applies.
func TestAuthzCheckMatchesRequests(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.MkdirAll(cfg, 0o755)
	app := versionServer(t, "reviews")
	inbound := freePort(t)
	writeConfig(t, cfg, "workloads.yaml", meshWorkloads, map[string]string{"INBOUND_PORT": port(inbound), "APP_PORT": port(app)})
	writeConfig(t, cfg, "peer.yaml", peerAuthentication, map[string]string{"MODE": "PERMISSIVE"})

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
	sidecar := func(name, ip, token, rebind string) string {
		admin := freePort(t)
		startProxyWithCredential(t, token, caAddr, root, nil, "--xds-address", td.XDSAddr(), "--ip", ip, "--pod-name", name, "--namespace", "shop",
			"--service-account", name, "--labels", "app="+name, "--admin-address", admin,
			"--ready-address", "", "--prometheus-address", "", "--merged-address", "", "--rebind", rebind, "--drain-duration", "1s")
		return admin
	}
	reviewsAdmin := sidecar("reviews", "127.0.0.1", reviews, fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", freePort(t), freePort(t), inbound))
	outbound := freePort(t)
	sidecar("front", "127.0.0.2", front, fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", outbound, freePort(t), freePort(t)))

	const frontID = "spiffe://cluster.local/ns/shop/sa/front"
	type request struct {
		meshed       bool // through front's sidecar, else plain text to reviews' sidecar
		method, path string
	}
	send := func(r request) (int, error) {
		addr := inbound
		if r.meshed {
			addr = outbound
		}
		req, _ := http.NewRequest(r.method, "http://"+addr+r.path, nil)
		req.Host = "reviews.shop.svc.cluster.local"
		// A new connection each time: a connection keeps the listener
		// config it was accepted with, the check answers for new ones.
		resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			return 0, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 403 && string(b) != "RBAC: access denied" {
			return 0, fmt.Errorf("403 with body %q", b)
		}
		return resp.StatusCode, nil
	}
	check := func(r request, args ...string) (authz.Answer, string, error) {
		base := []string{"authz", "check", reviewsAdmin, "--method", r.method, "--path", r.path, "--host", "reviews.shop.svc.cluster.local", "--source-ip", "127.0.0.1"}
		if r.meshed {
			base = append(base, "--principal", frontID)
		}
		text, err := runCLI(t, append(base, args...)...)
		if err != nil {
			return authz.Answer{}, "", err
		}
		js, err := runCLI(t, append(append(base, args...), "-o", "json")...)
		if err != nil {
			return authz.Answer{}, "", err
		}
		var a authz.Answer
		if err := json.Unmarshal([]byte(js), &a); err != nil {
			return a, "", fmt.Errorf("decode %s: %v", js, err)
		}
		return a, text, nil
	}
	lastDetails := func() string {
		resp, err := http.Get("http://" + reviewsAdmin + "/debug/failures")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		var s failures.Snapshot
		json.NewDecoder(resp.Body).Decode(&s)
		if len(s.Failures) == 0 {
			return "no failure recorded"
		}
		return s.Failures[0].Details
	}
	// compare sends r for real and asks the CLI about it: the verdicts
	// must agree, and the CLI's first line must be want.
	compare := func(r request, want string) error {
		code, err := send(r)
		if err != nil {
			return err
		}
		a, text, err := check(r)
		if err != nil {
			return err
		}
		if first := strings.SplitN(text, "\n", 2)[0]; first != want {
			return fmt.Errorf("%s %s (meshed %v): the CLI says %q, want %q (request got %d)\n%s", r.method, r.path, r.meshed, first, want, code, text)
		}
		if a.Allowed != (code == 200) {
			return fmt.Errorf("%s %s (meshed %v): the CLI says allowed=%v, the request got %d\n%s", r.method, r.path, r.meshed, a.Allowed, code, text)
		}
		if !a.Allowed {
			if got := lastDetails(); got != a.Details {
				return fmt.Errorf("%s %s (meshed %v): reviews' sidecar recorded %q, the CLI says %q", r.method, r.path, r.meshed, got, a.Details)
			}
		}
		return nil
	}
	get := request{true, "GET", "/info"}
	eventually(t, "meshed request before any policy", func() error { return compare(get, "ALLOWED: no AuthorizationPolicy applies") })

	steps := []struct {
		name, policies string
		cases          []struct {
			r    request
			want string
		}
	}{
		{"allow-nothing", checkAllowNothing, []struct {
			r    request
			want string
		}{
			{get, "DENIED: no ALLOW policy matched"},
			{request{false, "GET", "/info"}, "DENIED: no ALLOW policy matched"},
		}},
		{"deny by namespace", checkDenyNamespace, []struct {
			r    request
			want string
		}{
			{get, "DENIED by AuthorizationPolicy shop/deny-shop (DENY) rule 0"},
			{request{false, "GET", "/info"}, "ALLOWED: no DENY policy matched and no ALLOW policy applies"},
		}},
		{"allow by principal, method and path", checkAllowFront, []struct {
			r    request
			want string
		}{
			{get, "ALLOWED by AuthorizationPolicy shop/allow-front (ALLOW) rule 1"},
			{request{true, "GET", "/info/secret"}, "ALLOWED by AuthorizationPolicy shop/allow-front (ALLOW) rule 1"},
			{request{true, "POST", "/info"}, "DENIED: no ALLOW policy matched"},
			{request{true, "GET", "/reviews"}, "DENIED: no ALLOW policy matched"},
			{request{false, "GET", "/info"}, "DENIED: no ALLOW policy matched"},
		}},
		{"DENY before ALLOW", checkAllowFront + checkDenySecret, []struct {
			r    request
			want string
		}{
			{request{true, "GET", "/info/secret"}, "DENIED by AuthorizationPolicy shop/deny-secret (DENY) rule 0"},
			{get, "ALLOWED by AuthorizationPolicy shop/allow-front (ALLOW) rule 1"},
		}},
	}
	for _, st := range steps {
		writeConfig(t, cfg, "authz.yaml", st.policies, nil)
		// Front's sidecar pools its connections to reviews' sidecar, and
		// a pooled connection keeps the config it was accepted with until
		// it is replaced: each case waits for the request and the check
		// to agree on the verdict the case names.
		for _, c := range st.cases {
			eventually(t, st.name, func() error { return compare(c.r, c.want) })
		}
	}

	// The namespace alone stands for a principal of that namespace.
	a, _, err := check(request{false, "GET", "/info/secret"}, "--namespace", "shop")
	if err != nil || a.Allowed || a.Decision == nil || a.Decision.Policy == nil || a.Decision.Policy.Policy != "deny-secret" {
		t.Errorf("--namespace shop: got %+v, %v; want denied by deny-secret", a, err)
	}
	list, err := runCLI(t, "authz", "check", reviewsAdmin)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ACTION  AuthorizationPolicy", "DENY    shop/deny-secret     0", "ALLOW   shop/allow-front     0,1"} {
		if !strings.Contains(list, want) {
			t.Errorf("policy listing lacks %q:\n%s", want, list)
		}
	}
	t.Logf("trellis authz check %s:\n%s", reviewsAdmin, list)

	// Under STRICT a plain-text client's connection matches no chain.
	writeConfig(t, cfg, "peer.yaml", peerAuthentication, map[string]string{"MODE": "STRICT"})
	plain := request{false, "GET", "/info"}
	eventually(t, "STRICT: plain text", func() error {
		if code, err := send(plain); err == nil {
			return fmt.Errorf("a plain-text request got %d", code)
		}
		a, text, err := check(plain)
		if err != nil {
			return err
		}
		if a.Allowed || a.FilterChain != "" || !strings.HasPrefix(text, "DENIED: no filter chain of listener virtualInbound matches the connection (port 15006, plain text)") {
			return fmt.Errorf("the CLI says:\n%s", text)
		}
		return nil
	})
	if err := compare(get, "ALLOWED by AuthorizationPolicy shop/allow-front (ALLOW) rule 1"); err != nil {
		t.Errorf("STRICT: %v", err)
	}
}
