package netns

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// TestTrellisdServesTheCA: the trellisd a local mesh starts serves Istio's
// certificate API on the bridge address, port 15012, with the root it
// keeps in the state directory and published for the proxies; a
// credential it did not issue is refused.
func TestTrellisdServesTheCA(t *testing.T) {
	requireMesh(t)
	m := startMesh(t, "t6c", 247)
	state := filepath.Dir(m.LogDir())
	bundle, err := os.ReadFile(filepath.Join(state, "t6c-ca", "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(state, "ca", "ca-cert.pem"))
	if err != nil || !bytes.Equal(bytes.TrimSpace(root), bytes.TrimSpace(bundle)) {
		t.Fatalf("published bundle is not the persisted root (%v)", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	cc, err := grpc.NewClient(m.Plan.CAAddress(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "trellisd"})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer not-issued")
	_, err = securityv1alpha1.NewIstioCertificateServiceClient(cc).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: "x"})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "unknown workload credential") {
		t.Errorf("CreateCertificate with a credential trellisd did not issue: got %v, want Unauthenticated: unknown workload credential", err)
	}
}
