package proxy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a throw-away certificate authority for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trellis e2e test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a server certificate for host; org tells two issues apart.
func (ca *testCA) issue(t *testing.T, host, org string, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: host, Organization: []string{org}},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// tlsSecret is what `kubectl create -n ns secret tls name --cert --key`
// stores.
func tlsSecret(ns, name string, certPEM, keyPEM []byte) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: %s
  namespace: %s
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
`, name, ns, base64.StdEncoding.EncodeToString(certPEM), base64.StdEncoding.EncodeToString(keyPEM))
}

// protoServer answers with its name and the x-forwarded-proto it got.
func protoServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s x-forwarded-proto=%s", name, r.Header.Get("X-Forwarded-Proto"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// curlResult is one run of the real curl binary.
type curlResult struct {
	body, verbose string
	err           error
}

func runCurl(t *testing.T, args ...string) curlResult {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skipf("curl not installed (apt-get install -y curl): %v", err)
	}
	cmd := exec.Command(path, append([]string{"-sS", "-v", "--max-time", "5"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return curlResult{body: out.String(), verbose: errb.String(), err: err}
}

// servedCert dials addr with SNI host and returns the leaf certificate.
func servedCert(addr, host string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	// roots nil: accept any certificate (only whether one is served counts).
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: host, RootCAs: roots, InsecureSkipVerify: roots == nil})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestHTTPSGateway is scenario https-gateway: a router proxy labelled
// istio=ingressgateway terminates TLS on 443 with the certificate in the
// Kubernetes TLS Secret istio-system/zhongmingmao-credential (a file in
// trellisd's config directory, delivered over SDS), chosen by SNI, and
// routes to httpserver; the backend sees x-forwarded-proto: https. A wrong
// SNI gets no handshake, and rewriting the Secret file rotates the served
// certificate without restarting the proxy.
func TestHTTPSGateway(t *testing.T) {
	const host = "httpsserver.zhongmingmao.io"
	dir := t.TempDir()
	ca := newTestCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	be := protoServer(t, "httpserver")
	certPEM, keyPEM := ca.issue(t, host, "first", 100)
	writeConfig(t, dir, "services.yaml", service("securesvc", "httpserver", be, 55), nil)
	writeConfig(t, dir, "istio-specs.yaml", scenario(t, "https-gateway/istio-specs.yaml"), nil)
	writeConfig(t, dir, "secret.yaml", tlsSecret("istio-system", "zhongmingmao-credential", certPEM, keyPEM), nil)
	td := startTrellisd(t, dir, "")
	gw := freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--type", "router", "--ip", "127.0.0.1",
		"--pod-name", "istio-ingressgateway-5d8c", "--namespace", "istio-system", "--labels", "istio=ingressgateway",
		"--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", "0.0.0.0:443="+gw, "--drain-duration", "1s")

	resolve := func(h string) []string {
		// The scenario's `curl --resolve h:443:GW https://h`: 0.0.0.0:443 is
		// rebound to gw's free port, so --connect-to sends h:443 there and
		// the request still says https://h (SNI h, authority h).
		return []string{"--connect-to", h + ":443:" + gw, "--cacert", caFile, "https://" + h}
	}
	var r curlResult
	eventually(t, "curl through the https gateway", func() error {
		r = runCurl(t, resolve(host)...)
		if r.err != nil {
			return fmt.Errorf("curl: %v\n%s", r.err, r.verbose)
		}
		return nil
	})
	if want := "httpserver x-forwarded-proto=https"; r.body != want {
		t.Errorf("body: got %q, want %q\n%s", r.body, want, r.verbose)
	}
	for _, want := range []string{"CN=" + host, "O=first", `subjectAltName: host "` + host + `" matched cert's "` + host + `"`, "SSL certificate verify ok"} {
		if !strings.Contains(r.verbose, want) {
			t.Errorf("curl -v output lacks %q:\n%s", want, r.verbose)
		}
	}
	if leaf, err := servedCert(gw, host, roots); err != nil {
		t.Errorf("go tls dial: %v", err)
	} else if leaf.SerialNumber.Int64() != 100 {
		t.Errorf("served serial: got %d, want 100", leaf.SerialNumber.Int64())
	}

	if !strings.Contains(r.verbose, "ALPN: server accepted h2") {
		t.Errorf("curl -v: want h2 negotiated by ALPN:\n%s", r.verbose)
	}
	// HTTP/1.1 over TLS too; and at the edge (use_remote_address) the proxy
	// owns x-forwarded-proto: a client's own value is replaced by the
	// connection's scheme.
	for _, args := range [][]string{{"--http1.1"}, {"-H", "x-forwarded-proto: http"}, {"--http1.1", "-H", "x-forwarded-proto: http"}} {
		if f := runCurl(t, append(args, resolve(host)...)...); f.err != nil || f.body != "httpserver x-forwarded-proto=https" {
			t.Errorf("curl %v: got %q (%v), want %q", args, f.body, f.err, "httpserver x-forwarded-proto=https")
		}
	}

	// A name the Gateway does not serve matches no filter chain: no
	// certificate, no handshake (even for a client that would accept any
	// certificate).
	if w := runCurl(t, append([]string{"--insecure"}, resolve("other.zhongmingmao.io")...)...); w.err == nil || strings.Contains(w.verbose, "Server certificate") {
		t.Errorf("wrong SNI: curl got %q (%v), want a failed handshake:\n%s", w.body, w.err, w.verbose)
	}
	if leaf, err := servedCert(gw, "other.zhongmingmao.io", nil); err == nil {
		t.Errorf("wrong SNI: got certificate %q, want no handshake", leaf.Subject)
	}

	// kubectl apply of a new Secret: the proxy serves the new certificate
	// over the same process.
	certPEM, keyPEM = ca.issue(t, host, "rotated", 200)
	writeConfig(t, dir, "secret.yaml", tlsSecret("istio-system", "zhongmingmao-credential", certPEM, keyPEM), nil)
	eventually(t, "rotated certificate", func() error {
		leaf, err := servedCert(gw, host, roots)
		if err != nil {
			return err
		}
		if leaf.SerialNumber.Int64() != 200 {
			return fmt.Errorf("served serial %d, want 200", leaf.SerialNumber.Int64())
		}
		return nil
	})
	r = runCurl(t, resolve(host)...)
	if r.err != nil {
		t.Fatalf("curl after rotation: %v\n%s", r.err, r.verbose)
	}
	if want := "httpserver x-forwarded-proto=https"; r.body != want {
		t.Errorf("body after rotation: got %q, want %q", r.body, want)
	}
	if !strings.Contains(r.verbose, "O=rotated") {
		t.Errorf("curl -v after rotation lacks O=rotated:\n%s", r.verbose)
	}
}
