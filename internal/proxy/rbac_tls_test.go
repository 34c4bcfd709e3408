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
	"net/url"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestRBACPrincipalFromClientCertificate serves a MUTUAL TLS listener
// (certificate and validation context over SDS, as trellisd sends a
// gateway's) with Istio-shaped principal rules: the client certificate's
// SPIFFE URI SAN is the principal RBAC matches.
func TestRBACPrincipalFromClientCertificate(t *testing.T) {
	be := backend(t, nameHandler("app"))
	r := startProxy(t, nil, []testCluster{{Name: "be", Addrs: []string{be}}}, nil)

	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	leaf := func(serial int64, host, uri string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if host != "" {
			tmpl.DNSNames = []string{host}
		}
		if uri != "" {
			u, _ := url.Parse(uri)
			tmpl.URIs = []*url.URL{u}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	srvDER, srvKey := leaf(2, "app.example", "", x509.ExtKeyUsageServerAuth)
	kder, _ := x509.MarshalPKCS8PrivateKey(srvKey)
	cert, _ := anypb.New(&tlsv3.Secret{Name: "kubernetes://cred", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER})}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}}}}})
	ca, _ := anypb.New(&tlsv3.Secret{Name: "kubernetes://cred-cacert", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: caPEM}}}}})
	if err := r.p.Apply(resourcev3.SecretType, map[string]*anypb.Any{"kubernetes://cred": cert, "kubernetes://cred-cacert": ca}); err != nil {
		t.Fatal(err)
	}
	lis := `name: gw_443
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
listener_filters:
- name: envoy.filters.listener.tls_inspector
  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      require_client_certificate: true
      common_tls_context:
        tls_certificate_sds_secret_configs:
        - name: kubernetes://cred
          sds_config: {ads: {}, resource_api_version: V3}
        validation_context_sds_secret_config:
          name: kubernetes://cred-cacert
          sds_config: {ads: {}, resource_api_version: V3}
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
` + dedent4(hcmFilters(`          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                policies:
                  ns[istio-system]-policy[from-foo]-rule[0]:
                    permissions: [{and_rules: {rules: [{any: true}]}}]
                    principals: [{and_ids: {ids: [{or_ids: {ids: [{authenticated: {principal_name: {safe_regex: {regex: ".*/ns/foo/.*"}}}}]}}]}}]
                  ns[istio-system]-policy[sni]-rule[0]:
                    permissions: [{and_rules: {rules: [{requested_server_name: {exact: admin.example}}]}}]
                    principals: [{any: true}]
`+routerFilter, vhost(`              - match: {prefix: /}
                route: {cluster: be}
`), ""))
	var l listenerv3.Listener
	if err := yamlToProto([]byte(lis), &l); err != nil {
		t.Fatal(err)
	}
	la, _ := anypb.New(&l)
	if err := r.p.Apply(resourcev3.ListenerType, map[string]*anypb.Any{"gw_443": la}); err != nil {
		t.Fatal(err)
	}
	addr := r.addr(t, "gw_443")
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	get := func(uri, sni string) (int, string) {
		der, key := leaf(time.Now().UnixNano(), "", uri, x509.ExtKeyUsageClientAuth)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.example", Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
			DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, n, addr)
			}}
		if sni != "" {
			tr.TLSClientConfig.ServerName, tr.TLSClientConfig.InsecureSkipVerify = sni, true
		}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://app.example/")
		if err != nil {
			t.Fatalf("%s: %v\n%s", uri, err, r.log.String())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, body := get("spiffe://cluster.local/ns/foo/sa/client", ""); code != 200 || body != "app" {
		t.Errorf("identity in ns foo: got %d %q, want 200 app", code, body)
	}
	if code, body := get("spiffe://cluster.local/ns/bar/sa/client", ""); code != 403 || body != "RBAC: access denied" {
		t.Errorf("identity in ns bar: got %d %q, want 403", code, body)
	}
	if code, _ := get("spiffe://cluster.local/ns/bar/sa/client", "admin.example"); code != 200 {
		t.Errorf("SNI admin.example: got %d, want 200 by requested_server_name", code)
	}
}
