package proxy

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// headerServer answers with the request headers the tests look at.
func headerServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "authorization=%q x-jwt-sub=%q x-jwt-assertion-kept=%t", r.Header.Get("Authorization"), r.Header.Get("X-Jwt-Sub"), r.Header.Get("X-Jwt-Assertion") != "")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// issuer is a test identity provider: an RSA key, its JWKS served over
// HTTP (503 until up is set), and a token signer.
type issuer struct {
	signer jose.Signer
	jwks   string
	up     atomic.Bool
	url    string
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k, KeyID: "key-1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "key-1", Algorithm: "RS256", Use: "sig"}}})
	is := &issuer{signer: s, jwks: string(b)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !is.up.Load() {
			http.Error(w, "identity provider down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, is.jwks)
	}))
	t.Cleanup(srv.Close)
	is.url = srv.URL + "/.well-known/jwks.json"
	return is
}

func (is *issuer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(claims)
	o, err := is.signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := o.CompactSerialize()
	return s
}

const jwtIssuer = "testing@secure.istio.io"

// TestRequestAuthenticationAtGateway follows Istio's "JWT authentication"
// task at a real trellis-proxy ingress gateway configured by trellisd,
// with the keys served by a local identity provider at jwksUri (fetched
// by trellisd, inlined for the proxy): while the JWKS cannot be fetched,
// tokens are refused (401), never accepted unchecked; then no token ->
// 200, a valid token -> 200 with outputClaimToHeaders at the app and no
// Authorization header (forwardOriginalToken false), a bad signature or
// an expired token -> 401 with Envoy's reason; an AuthorizationPolicy
// requiring requestPrincipals ["*"] answers 403 without a token, and a
// when on request.auth.claims[groups] allows one group and denies another.
func TestRequestAuthenticationAtGateway(t *testing.T) {
	dir := t.TempDir()
	app := headerServer(t)
	idp := newIssuer(t)
	other := newIssuer(t)
	writeConfig(t, dir, "services.yaml", service("default", "productpage", app, 31)+"---\n"+authzGateway, nil)
	writeConfig(t, dir, "jwt.yaml", fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt-example, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
  - issuer: %q
    jwksUri: %q
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]
`, jwtIssuer, idp.url), nil)
	srv := startTrellisdWith(t, trellisd.Options{ConfigDir: dir, AccessLogFile: filepath.Join(t.TempDir(), "access.log"), DebugAddress: "127.0.0.1:0", JWKSRetry: 100 * time.Millisecond})
	td := srv.XDSAddr()
	gw := freePort(t)
	startProxy(t, "--xds-address", td, "--type", "router", "--ip", "127.0.0.1",
		"--pod-name", "istio-ingressgateway-5d8c", "--namespace", "istio-system", "--labels", "istio=ingressgateway",
		"--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", "0.0.0.0:80="+gw, "--drain-duration", "1s")
	c := &http.Client{Timeout: 5 * time.Second}
	do := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+gw+"/headers", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	now := time.Now().Unix()
	claims := func(groups ...string) map[string]any {
		return map[string]any{"iss": jwtIssuer, "sub": "alice", "exp": now + 3600, "groups": groups}
	}
	valid := idp.token(t, claims("dev"))
	want := func(what, token string, code int, body string) {
		t.Helper()
		eventually(t, what, func() error {
			if got, b := do(token); got != code || !strings.Contains(b, body) {
				return fmt.Errorf("got %d %q, want %d %q", got, b, code, body)
			}
			return nil
		})
	}

	want("JWKS not fetchable: no token passes", "", 200, `x-jwt-sub=""`)
	want("JWKS not fetchable: a valid token is refused", valid, 401, "Jwks doesn't have key to match kid or alg from Jwt")
	eventually(t, "configz names the failing jwksUri and its resource", func() error {
		var cz trellisd.ConfigzResponse
		resp, err := http.Get("http://" + srv.DebugAddr() + "/debug/configz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&cz); err != nil {
			return err
		}
		if len(cz.JWKSFailures) != 1 || cz.JWKSFailures[0].URI != idp.url || strings.Join(cz.JWKSFailures[0].Resources, ",") != "istio-system/jwt-example" || !strings.Contains(cz.JWKSFailures[0].Error, "503") {
			return fmt.Errorf("jwksFailures %+v", cz.JWKSFailures)
		}
		return nil
	})
	idp.up.Store(true)
	want("valid token, claim header, token removed", valid, 200, `authorization="" x-jwt-sub="alice"`)
	if resp, err := http.Get("http://" + srv.DebugAddr() + "/debug/configz"); err == nil {
		var cz trellisd.ConfigzResponse
		json.NewDecoder(resp.Body).Decode(&cz)
		resp.Body.Close()
		if len(cz.JWKSFailures) != 0 {
			t.Errorf("jwksFailures after a good fetch: %+v", cz.JWKSFailures)
		}
	}
	want("no token", "", 200, `x-jwt-sub=""`)
	want("signed by another key", other.token(t, claims("dev")), 401, "Jwt verification fails")
	want("expired", idp.token(t, map[string]any{"iss": jwtIssuer, "sub": "alice", "exp": now - 3600}), 401, "Jwt is expired")

	writeConfig(t, dir, "authz.yaml", `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: ALLOW
  rules:
  - from: [{source: {requestPrincipals: ["testing@secure.istio.io/*"]}}]
    when:
    - key: request.auth.claims[groups]
      values: [dev]
`, nil)
	want("requestPrincipals: no token", "", 403, "RBAC: access denied")
	want("requestPrincipals: valid token in group dev", valid, 200, `x-jwt-sub="alice"`)
	want("claims[groups]: group ops", idp.token(t, claims("ops")), 403, "RBAC: access denied")
}

// TestRequestAuthenticationAtSidecar applies a RequestAuthentication
// with a custom token header (fromHeaders x-jwt-assertion, no prefix) and
// forwardOriginalToken to a real reviews sidecar's inbound listener, and an
// AuthorizationPolicy DENY on notRequestPrincipals: a plain-text request
// without a token is denied (403), a valid token in x-jwt-assertion passes
// and reaches the app with the token kept, a token in the default
// Authorization header is not read (403), an expired one is refused (401).
func TestRequestAuthenticationAtSidecar(t *testing.T) {
	dir := t.TempDir()
	app := headerServer(t)
	inbound := freePort(t)
	idp := newIssuer(t)
	idp.up.Store(true)
	writeConfig(t, dir, "workloads.yaml", meshWorkloads, map[string]string{"INBOUND_PORT": port(inbound), "APP_PORT": port(app)})
	writeConfig(t, dir, "jwt.yaml", fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: reviews-jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: %q
    jwksUri: %q
    fromHeaders: [{name: x-jwt-assertion}]
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-anonymous, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - from: [{source: {notRequestPrincipals: ["*"]}}]
`, jwtIssuer, idp.url), nil)
	td := startTrellisd(t, dir, "")
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.1", "--pod-name", "reviews", "--namespace", "shop",
		"--service-account", "reviews", "--labels", "app=reviews", "--admin-address", freePort(t),
		"--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", freePort(t), freePort(t), inbound), "--drain-duration", "1s")
	do := func(hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+inbound+"/reviews", nil)
		req.Host = "reviews.shop.svc.cluster.local"
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	now := time.Now().Unix()
	valid := idp.token(t, map[string]any{"iss": jwtIssuer, "sub": "bob", "exp": now + 3600})
	want := func(what string, hdr map[string]string, code int, body string) {
		t.Helper()
		eventually(t, what, func() error {
			if got, b := do(hdr); got != code || !strings.Contains(b, body) {
				return fmt.Errorf("got %d %q, want %d %q", got, b, code, body)
			}
			return nil
		})
	}
	want("no token", nil, 403, "RBAC: access denied")
	want("valid token in x-jwt-assertion", map[string]string{"x-jwt-assertion": valid}, 200, `x-jwt-assertion-kept=true`)
	want("token in Authorization is not read", map[string]string{"Authorization": "Bearer " + valid}, 403, "RBAC: access denied")
	want("expired", map[string]string{"x-jwt-assertion": idp.token(t, map[string]any{"iss": jwtIssuer, "sub": "bob", "exp": now - 600})}, 401, "Jwt is expired")
}
