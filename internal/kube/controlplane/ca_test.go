package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// trellisd wired to a real kube-apiserver serves its CA as istiod does:
// the root in istio-ca-secret, callers authenticated by their
// ServiceAccount token (audience istio-ca) through TokenReview, the
// serving certificate valid for istiod.<ns>.svc.
func TestWiredTrellisdIssuesPodIdentities(t *testing.T) {
	env := kubetest.Shared(t)
	c := env.Clients
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const sys, ns = "cp-ca-system", "cp-ca-shop"
	for _, n := range []string{sys, ns} {
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, sa := range []string{"reviews", "ratings"} {
		if _, err := c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	o := trellisd.Options{XDSAddress: "127.0.0.1:0", CAAddress: "127.0.0.1:0", CACertsDir: t.TempDir(), Logf: t.Logf}
	if _, err := Wire(ctx, Options{Clients: c, Namespace: sys}, &o); err != nil {
		t.Fatal(err)
	}
	ready := make(chan *trellisd.Server, 1)
	o.Ready = func(s *trellisd.Server) { ready <- s }
	done := make(chan error, 1)
	go func() { done <- trellisd.Run(ctx, o) }()
	var s *trellisd.Server
	select {
	case s = <-ready:
	case err := <-done:
		t.Fatalf("trellisd: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("trellisd did not start")
	}
	t.Cleanup(func() { cancel(); <-done })

	sec, err := c.Kube.CoreV1().Secrets(sys).Get(ctx, ca.SelfSignedSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("istio-ca-secret: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(sec.Data[ca.CACertFile]) {
		t.Fatal("istio-ca-secret has no ca-cert.pem")
	}
	// The trust bundle reaches every namespace, old and new, as istiod's
	// istio-ca-root-cert ConfigMap.
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cp-ca-later"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{ns, "cp-ca-later"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			cm, err := c.Kube.CoreV1().ConfigMaps(n).Get(ctx, ca.RootConfigMap, metav1.GetOptions{})
			if err == nil && cm.Data[ca.RootConfigMapKey] == string(sec.Data[ca.RootCertFile]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("namespace %s: %s: got %v, %v; want root-cert.pem = istio-ca-secret's root-cert.pem", n, ca.RootConfigMap, cm, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Deleted by someone: put back.
	if err := c.Kube.CoreV1().ConfigMaps(ns).Delete(ctx, ca.RootConfigMap, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Kube.CoreV1().ConfigMaps(ns).Get(ctx, ca.RootConfigMap, metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s deleted in %s was not put back", ca.RootConfigMap, ns)
		}
		time.Sleep(50 * time.Millisecond)
	}

	cc, err := grpc.NewClient(s.CAAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "istiod." + sys + ".svc"})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := securityv1alpha1.NewIstioCertificateServiceClient(cc)
	exp := int64(600)
	tr, err := c.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "reviews", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{ca.Audience}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	call := func(spiffe string) (*securityv1alpha1.IstioCertificateResponse, error) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		u, _ := url.Parse(spiffe)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
		if err != nil {
			t.Fatal(err)
		}
		cctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token)
		return client.CreateCertificate(cctx, &securityv1alpha1.IstioCertificateRequest{Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	}
	own := "spiffe://cluster.local/ns/" + ns + "/sa/reviews"
	resp, err := call(own)
	if err != nil {
		t.Fatalf("reviews' own certificate: %v", err)
	}
	b, _ := pem.Decode([]byte(resp.GetCertChain()[0]))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not chain to istio-ca-secret's root: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != own {
		t.Errorf("leaf SAN: got %v, want %s", leaf.URIs, own)
	}
	other := "spiffe://cluster.local/ns/" + ns + "/sa/ratings"
	_, err = call(other)
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), other) {
		t.Errorf("reviews' token asking for ratings: got %v, want PermissionDenied naming %s", err, other)
	}
}
