package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/ca"
)

// runCA starts the real trellisd with its CA on a loopback port and waits
// for the trust bundle it publishes. It returns the CA address, the
// bundle, and a stop function.
func runCA(t *testing.T, caDir, creds, rootFile string) (string, []byte, func()) {
	t.Helper()
	os.Remove(rootFile)
	addr := freeAddr(t)
	var stderr bytes.Buffer
	cmd := trellisdCmd("--xds-address", "127.0.0.1:0", "--debug-address", "", "--metrics-address", "",
		"--ca-address", addr, "--ca-dir", caDir, "--cacerts-dir", filepath.Join(caDir, "no-cacerts"),
		"--workload-credentials", creds, "--ca-root-file", rootFile, "--trust-domain", "example.org")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(rootFile); err == nil && len(b) > 0 {
			return addr, b, stop
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("trellisd did not publish its trust bundle; stderr:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createCertificate(t *testing.T, addr string, roots []byte, token, spiffe string) ([]string, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "trellisd"})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(spiffe)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(cc).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), ValidityDuration: 3600})
	if err != nil {
		return nil, err
	}
	return resp.GetCertChain(), nil
}

// The real trellisd serves Istio's CSR API on its CA port: a registered
// workload gets a leaf for its SPIFFE ID in the configured trust domain;
// after a restart the root is the same and leaves still chain to it.
func TestCAServesAndKeepsItsRoot(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "workload-credentials")
	tok, _ := ca.NewToken()
	if err := ca.WriteCredentials(creds, map[string]ca.Caller{tok: {Namespace: "shop", ServiceAccount: "front"}}); err != nil {
		t.Fatal(err)
	}
	caDir, rootFile := filepath.Join(dir, "ca"), filepath.Join(dir, "root-cert.pem")
	id := "spiffe://example.org/ns/shop/sa/front"

	addr, root1, stop := runCA(t, caDir, creds, rootFile)
	chain, err := createCertificate(t, addr, root1, tok, id)
	stop()
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	if chain[len(chain)-1] != string(root1) {
		t.Errorf("last chain element is not the published trust bundle")
	}
	if _, err := createCertificate(t, addr, root1, tok, id); err == nil {
		t.Fatal("CA still answering after stop")
	}

	addr, root2, stop := runCA(t, caDir, creds, rootFile)
	defer stop()
	if !bytes.Equal(root1, root2) {
		t.Fatal("the root changed across a restart")
	}
	chain, err = createCertificate(t, addr, root2, tok, id)
	if err != nil {
		t.Fatalf("CreateCertificate after restart: %v", err)
	}
	b, _ := pem.Decode([]byte(chain[0]))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root1)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("leaf after restart does not chain to the first root: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id {
		t.Errorf("leaf SAN: got %v, want %s", leaf.URIs, id)
	}
	if _, err := createCertificate(t, addr, root2, tok, "spiffe://example.org/ns/shop/sa/back"); err == nil {
		t.Error("a certificate for another identity was issued")
	}
}
