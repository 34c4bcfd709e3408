package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestHTTPSGatewayTerminatesTLSBySNI(t *testing.T) {
	be := backend(t, nameHandler("httpserver"))
	r := startProxy(t, nil, []testCluster{{Name: "outbound|80||httpserver.securesvc.svc.cluster.local", Addrs: []string{be}}}, nil)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "httpsserver.zhongmingmao.io"},
		DNSNames: []string{"httpsserver.zhongmingmao.io"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	sec, _ := anypb.New(&tlsv3.Secret{Name: "kubernetes://zhongmingmao-credential", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}}}}})
	if err := r.p.Apply(resourcev3.SecretType, map[string]*anypb.Any{"kubernetes://zhongmingmao-credential": sec}); err != nil {
		t.Fatal(err)
	}
	lis := `name: gw_443
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
listener_filters:
- name: envoy.filters.listener.tls_inspector
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}
filter_chains:
- filter_chain_match: {server_names: [httpsserver.zhongmingmao.io]}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        alpn_protocols: [h2, http/1.1]
        tls_certificate_sds_secret_configs:
        - name: kubernetes://zhongmingmao-credential
          sds_config: {ads: {}, resource_api_version: V3}
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
` + dedent4(hcm(`            - name: gw
              domains: ["httpsserver.zhongmingmao.io", "httpsserver.zhongmingmao.io:*"]
              routes:
              - match: {prefix: /}
                route: {cluster: "outbound|80||httpserver.securesvc.svc.cluster.local"}
`, ""))
	var l listenerv3.Listener
	if err := yamlToProto([]byte(lis), &l); err != nil {
		t.Fatal(err)
	}
	la, _ := anypb.New(&l)
	if err := r.p.Apply(resourcev3.ListenerType, map[string]*anypb.Any{"gw_443": la}); err != nil {
		t.Fatal(err)
	}
	addr := r.addr(t, "gw_443")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	for _, h2 := range []bool{true, false} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2,
			DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, n, addr)
			}}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://httpsserver.zhongmingmao.io/")
		if err != nil {
			t.Fatalf("h2=%v: %v\n%s", h2, err, r.log.String())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("h2=%v proto=%s status=%d body=%q", h2, resp.Proto, resp.StatusCode, body)
		if resp.StatusCode != 200 || string(body) != "httpserver" {
			t.Errorf("h2=%v: got %d %q", h2, resp.StatusCode, body)
		}
		tr.CloseIdleConnections()
	}
}

func dedent4(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "    ")
	}
	return strings.Join(lines, "\n")
}
