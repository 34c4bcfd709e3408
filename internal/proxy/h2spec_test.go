package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"encoding/xml"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// h2specAccepted are the h2spec cases the downstream HTTP/2 is known to
// fail, by h2spec's id, with why the project accepts each. Every other
// case must pass; a listed case that starts passing fails the test too, so
// the list stays true.
var h2specAccepted = map[string]string{
	// One SETTINGS frame carrying SETTINGS_INITIAL_WINDOW_SIZE twice:
	// x/net/http2 treats repeated identifiers as a connection error
	// (PROTOCOL_ERROR) instead of applying them in order. Refusing a
	// frame no real client sends is safe.
	"http2/6.5.3/1": "x/net/http2 rejects duplicate settings in one frame",
	// Connection-specific fields (connection, te other than trailers):
	// x/net/http2 answers the stream 400 itself, before the proxy's
	// handler, instead of resetting it with PROTOCOL_ERROR. The request
	// never reaches the router or an upstream, so nothing can be smuggled.
	"http2/8.1.2.2/1": "x/net/http2 answers 400 instead of RST_STREAM PROTOCOL_ERROR",
	"http2/8.1.2.2/2": "x/net/http2 answers 400 instead of RST_STREAM PROTOCOL_ERROR",
}

// h2specReport is the part of h2spec's JUnit report the test reads: a
// suite per section ("http2/6.5.3"), a case per numbered test in it.
type h2specReport struct {
	Suites []struct {
		Package string `xml:"package,attr"`
		Cases   []struct {
			ClassName string    `xml:"classname,attr"`
			Failure   *struct{} `xml:"failure"`
			Error     *struct{} `xml:"error"`
			Skipped   *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestH2Spec runs the h2spec conformance suite (scripts/h2spec.sh,
// $TRELLIS_H2SPEC) against the proxy's downstream HTTP/2, over h2c with
// prior knowledge and over TLS with ALPN h2.
func TestH2Spec(t *testing.T) {
	bin := os.Getenv("TRELLIS_H2SPEC")
	if bin == "" {
		t.Skip("TRELLIS_H2SPEC is unset: run scripts/h2spec.sh (scripts/test.sh exports it) to build the pinned h2spec")
	}
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		// A body larger than the initial window: the flow control cases
		// need DATA the proxy has to hold back.
		w.Write([]byte(strings.Repeat("h2spec ", 16<<10)))
	}))
	// codec_type HTTP2: with AUTO, bytes that are not the HTTP/2 preface
	// are HTTP/1.1 (as in Envoy), and h2spec's invalid-preface case
	// wants the connection closed.
	r := startProxy(t, []testListener{{Name: "h2c", HCM: strings.Replace(hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), ""), "codec_type: AUTO", "codec_type: HTTP2", 1)}}, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)
	tlsAddr := h2specTLSListener(t, r)
	for _, tc := range []struct {
		name, addr string
		tls        bool
	}{{"h2c", r.addr(t, "h2c"), false}, {"tls", tlsAddr, true}} {
		t.Run(tc.name, func(t *testing.T) {
			host, port, _ := net.SplitHostPort(tc.addr)
			report := filepath.Join(t.TempDir(), "h2spec.xml")
			args := []string{"-h", host, "-p", port, "-o", "5", "-j", report}
			if tc.tls {
				args = append(args, "-t", "-k")
			}
			out, _ := exec.Command(bin, args...).CombinedOutput()
			data, err := os.ReadFile(report)
			if err != nil {
				t.Fatalf("h2spec wrote no report: %v\n%s", err, out)
			}
			var rep h2specReport
			if err := xml.Unmarshal(data, &rep); err != nil {
				t.Fatalf("h2spec report: %v", err)
			}
			var passed, skipped int
			var failed []string
			for _, s := range rep.Suites {
				for i, c := range s.Cases {
					id := s.Package + "/" + strconv.Itoa(i+1)
					switch {
					case c.Failure != nil || c.Error != nil:
						failed = append(failed, id)
					case c.Skipped != nil:
						skipped++
					default:
						passed++
					}
				}
			}
			sort.Strings(failed)
			t.Logf("h2spec %s: %d passed, %d skipped, %d failed %v", tc.name, passed, skipped, len(failed), failed)
			seen := map[string]bool{}
			for _, id := range failed {
				seen[id] = true
				if _, ok := h2specAccepted[id]; !ok {
					t.Errorf("h2spec case %s fails", id)
				}
			}
			for id := range h2specAccepted {
				if !seen[id] {
					t.Errorf("h2spec case %s is listed as accepted but passes: remove it from h2specAccepted", id)
				}
			}
			if passed == 0 {
				t.Errorf("no h2spec case passed\n%s", out)
			}
		})
	}
}

// h2specTLSListener adds a listener terminating TLS (ALPN h2 and
// http/1.1) with a fresh self-signed certificate and returns its address.
func h2specTLSListener(t *testing.T, r *running) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "h2spec.test"},
		DNSNames: []string{"h2spec.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	sec, _ := anypb.New(&tlsv3.Secret{Name: "h2spec-cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}}}}})
	if err := r.p.Apply(resourcev3.SecretType, map[string]*anypb.Any{"h2spec-cert": sec}); err != nil {
		t.Fatal(err)
	}
	// Another loopback address: the h2c listener holds 127.0.0.1:0.
	lis := `name: h2spec_tls
address: {socket_address: {address: 127.0.0.2, port_value: 0}}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        alpn_protocols: [h2, http/1.1]
        tls_certificate_sds_secret_configs:
        - name: h2spec-cert
          sds_config: {ads: {}, resource_api_version: V3}
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
` + dedent4(hcm(vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), ""))
	var l listenerv3.Listener
	if err := yamlToProto([]byte(lis), &l); err != nil {
		t.Fatal(err)
	}
	la, _ := anypb.New(&l)
	if err := r.p.Apply(resourcev3.ListenerType, map[string]*anypb.Any{"h2spec_tls": la}); err != nil {
		t.Fatal(err)
	}
	return r.addr(t, "h2spec_tls")
}
