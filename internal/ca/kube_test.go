package ca

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func saToken(t *testing.T, c kubernetes.Interface, ns, sa string, audiences ...string) string {
	t.Helper()
	exp := int64(600)
	tr, err := c.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// On a real kube-apiserver: the self-signed root lives in the
// istio-ca-secret Secret and survives a restart; a ServiceAccount token
// with audience istio-ca is accepted through TokenReview and yields that
// ServiceAccount's identity, and only that one.
func TestKubernetesTokenReviewAndSecret(t *testing.T) {
	env := kubetest.Shared(t)
	c := env.Clients.Kube
	ctx := kubetest.Context(t)
	const sys, ns = "ca-system", "ca-shop"
	for _, n := range []string{sys, ns} {
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, sa := range []string{"front", "back"} {
		if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	plugged := Secret{Client: c, Namespace: sys, Name: PluggedSecret}
	self := Secret{Client: c, Namespace: sys, Name: SelfSignedSecret}
	a, err := Load(ctx, plugged, self, "cluster.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sec, err := c.CoreV1().Secrets(sys).Get(ctx, SelfSignedSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("istio-ca-secret: %v", err)
	}
	if len(sec.Data[CACertFile]) == 0 || len(sec.Data[CAKeyFile]) == 0 {
		t.Errorf("istio-ca-secret keys: got %v, want ca-cert.pem and ca-key.pem", keys(sec.Data))
	}
	again, err := Load(ctx, plugged, self, "cluster.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !again.Certificate().Equal(a.Certificate()) {
		t.Error("root changed across restarts")
	}

	client := serve(t, &Server{Authority: a, Auth: TokenReview{Client: c}})
	front := "spiffe://cluster.local/ns/" + ns + "/sa/front"
	back := "spiffe://cluster.local/ns/" + ns + "/sa/back"
	frontTok := saToken(t, c, ns, "front", Audience)
	csrFront, _ := csrFor(t, front)
	resp, err := client.CreateCertificate(withToken(ctx, frontTok), &securityv1alpha1.IstioCertificateRequest{Csr: csrFront})
	if err != nil {
		t.Fatalf("front's own certificate: %v", err)
	}
	if leaf := verifyChain(t, resp.GetCertChain()); len(leaf.URIs) != 1 || leaf.URIs[0].String() != front {
		t.Errorf("leaf SAN: got %v, want %s", leaf.URIs, front)
	}

	csrBack, _ := csrFor(t, back)
	_, err = client.CreateCertificate(withToken(ctx, frontTok), &securityv1alpha1.IstioCertificateRequest{Csr: csrBack})
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), back) || !strings.Contains(st.Message(), front) {
		t.Errorf("front asking for back's identity: got %v, want PermissionDenied naming both", err)
	}
	// A token for the API server's own audience is not a CA credential.
	apiTok := saToken(t, c, ns, "back")
	_, err = client.CreateCertificate(withToken(ctx, apiTok), &securityv1alpha1.IstioCertificateRequest{Csr: csrBack})
	if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated {
		t.Errorf("token without audience istio-ca: got %v, want Unauthenticated", err)
	}
	resp, err = client.CreateCertificate(withToken(ctx, saToken(t, c, ns, "back", Audience)), &securityv1alpha1.IstioCertificateRequest{Csr: csrBack})
	if err != nil {
		t.Fatalf("back's own certificate: %v", err)
	}
	verifyChain(t, resp.GetCertChain())

	// A cacerts Secret takes over from the self-signed root.
	root := newTestCA(t, "root", nil)
	inter := newTestCA(t, "intermediate", root)
	if _, err := c.CoreV1().Secrets(sys).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: PluggedSecret}, Data: map[string][]byte{
		CACertFile: inter.pem, CAKeyFile: inter.keyPEM(t), CertChainFile: append(append([]byte{}, inter.pem...), root.pem...), RootCertFile: root.pem,
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := Load(ctx, plugged, self, "cluster.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !p.Plugged() || !p.Certificate().Equal(inter.cert) {
		t.Error("cacerts Secret not used")
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
