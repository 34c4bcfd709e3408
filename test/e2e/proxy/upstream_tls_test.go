package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// issueClient signs a client certificate (extended key usage client auth)
// for name.
func (ca *testCA) issueClient(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
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

// tlsApp is an HTTPS server with a certificate from ca for host; it
// accepts client certificates from ca and answers with the SNI it got and
// the client certificate's common name.
func tlsApp(t *testing.T, ca *testCA, host string) string {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, host, "secure app", 2)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			client := "none"
			if len(r.TLS.PeerCertificates) > 0 {
				client = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			fmt.Fprintf(w, "secure sni=%s client=%s", r.TLS.ServerName, client)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientCAs},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

var uf = regexp.MustCompile(` 503 UF(,URX)? upstream_reset_before_response_started\{connection_failure\|TLS_error:`)

// get sends one plain HTTP request through the sidecar's listener.
func get(t *testing.T, addr, host string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUpstreamTLSOrigination is Istio's egress TLS origination: a
// ServiceEntry for an HTTPS service (here a Go TLS server on 127.0.0.1
// with its own CA) and a DestinationRule with tls mode SIMPLE
// (caCertificates, sni, subjectAltNames as file paths and names). The
// application's plain HTTP call through the real trellis-proxy sidecar,
// configured by the real trellisd, reaches the TLS server; a wrong SAN or
// a CA that did not sign the server fails with 503 UF and the TLS error in
// the response, the response details and the transport failure reason of
// the access log; MUTUAL with clientCertificate/privateKey shows the
// server the client certificate.
func TestUpstreamTLSOrigination(t *testing.T) {
	const host = "secure.example.com"
	ca, otherCA := newTestCA(t), newTestCA(t)
	app := tlsApp(t, ca, host)
	certs := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(certs, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile, otherCAFile := write("ca.pem", ca.pem), write("other-ca.pem", otherCA.pem)
	clientCert, clientKey := ca.issueClient(t, "sleep.default")
	certFile, keyFile := write("client.pem", clientCert), write("client-key.pem", clientKey)

	dir := t.TempDir()
	accessLog := filepath.Join(t.TempDir(), "access.log")
	writeConfig(t, dir, "secure.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: secure, namespace: default}
spec:
  hosts: [{{HOST}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: {{PORT}}}}]
`, map[string]string{"HOST": host, "PORT": port(app)})
	dr := func(tls string) {
		writeConfig(t, dir, "dr.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: secure, namespace: default}
spec:
  host: {{HOST}}
  trafficPolicy:
    tls:
`+tls, map[string]string{"HOST": host})
	}
	dr(fmt.Sprintf("      mode: SIMPLE\n      caCertificates: %s\n      sni: %s\n      subjectAltNames: [%s]\n", caFile, host, host))
	td := startTrellisd(t, dir, accessLog)
	local := sidecar(t, td.XDSAddr(), "default", "sleep-1", 80)

	want := "secure sni=" + host + " client=none"
	eventually(t, "SIMPLE TLS origination", func() error {
		if code, body := get(t, local, host); code != 200 || body != want {
			return fmt.Errorf("got %d %q, want 200 %q", code, body, want)
		}
		return nil
	})

	failure := func(what, tls, wantErr string) {
		t.Helper()
		dr(tls)
		var body string
		eventually(t, what, func() error {
			var code int
			code, body = get(t, local, host)
			if code != 503 || !strings.Contains(body, "transport failure reason: TLS_error:") || !strings.Contains(body, wantErr) {
				return fmt.Errorf("got %d %q, want 503 with the TLS error %q", code, body, wantErr)
			}
			return nil
		})
		eventually(t, what+": access log", func() error {
			for _, l := range readLines(accessLog) {
				// UF,URX: Istio's default retry policy retried the
				// connect failure.
				if uf.MatchString(l) && strings.Contains(l, wantErr) && strings.Contains(l, `"TLS_error:`) {
					return nil
				}
			}
			return fmt.Errorf("no 503 UF line with the TLS failure in the access log:\n%s", strings.Join(readLines(accessLog), "\n"))
		})
		t.Logf("%s: %s", what, body)
	}
	failure("wrong subjectAltNames",
		fmt.Sprintf("      mode: SIMPLE\n      caCertificates: %s\n      sni: %s\n      subjectAltNames: [other.example.com]\n", caFile, host),
		"match none of [other.example.com]")
	failure("wrong caCertificates",
		fmt.Sprintf("      mode: SIMPLE\n      caCertificates: %s\n      sni: %s\n", otherCAFile, host),
		"certificate signed by unknown authority")

	dr(fmt.Sprintf("      mode: MUTUAL\n      caCertificates: %s\n      clientCertificate: %s\n      privateKey: %s\n      sni: %s\n      subjectAltNames: [%s]\n",
		caFile, certFile, keyFile, host, host))
	want = "secure sni=" + host + " client=sleep.default"
	eventually(t, "MUTUAL TLS origination", func() error {
		if code, body := get(t, local, host); code != 200 || body != want {
			return fmt.Errorf("got %d %q, want 200 %q", code, body, want)
		}
		return nil
	})
}
