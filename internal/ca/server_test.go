package ca

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// localCA is a trellisd-like CA with a self-signed root in a temporary
// directory and two registered workloads.
func localCA(t *testing.T, dir string) (*Server, map[string]string) {
	t.Helper()
	a, err := Load(context.Background(), nil, Dir(filepath.Join(dir, "ca")), "cluster.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	reg := map[string]Caller{}
	for _, w := range []Caller{{"shop", "front"}, {"shop", "back"}} {
		tok, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		tokens[w.ServiceAccount] = tok
		reg[tok] = w
	}
	cred := filepath.Join(dir, "workload-credentials")
	if err := WriteCredentials(cred, reg); err != nil {
		t.Fatal(err)
	}
	return &Server{Authority: a, Auth: Credentials{Path: cred}}, tokens
}

func TestCreateCertificate(t *testing.T) {
	s, tokens := localCA(t, t.TempDir())
	client := serve(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	front := "spiffe://cluster.local/ns/shop/sa/front"

	csr, key := csrFor(t, front)
	resp, err := client.CreateCertificate(withToken(ctx, tokens["front"]), &securityv1alpha1.IstioCertificateRequest{Csr: csr})
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	leaf := verifyChain(t, resp.GetCertChain())
	if len(resp.GetCertChain()) != 2 {
		t.Errorf("self-signed CA: got %d chain elements, want 2 (leaf, root)", len(resp.GetCertChain()))
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != front || len(leaf.DNSNames) != 0 {
		t.Errorf("leaf SANs: got URIs %v DNS %v, want exactly %s", leaf.URIs, leaf.DNSNames, front)
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		t.Error("leaf is not for the CSR's key")
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 24*time.Hour || got > 24*time.Hour+2*clockSkew {
		t.Errorf("default lifetime: got %s, want 24h", got)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}

	// Requested lifetimes are honoured up to the maximum.
	for _, tc := range []struct {
		ask  int64
		want time.Duration
	}{{3600, time.Hour}, {10 * 24 * 3600, 24 * time.Hour}} {
		resp, err := client.CreateCertificate(withToken(ctx, tokens["front"]), &securityv1alpha1.IstioCertificateRequest{Csr: csr, ValidityDuration: tc.ask})
		if err != nil {
			t.Fatal(err)
		}
		l := verifyChain(t, resp.GetCertChain())
		if got := l.NotAfter.Sub(l.NotBefore) - clockSkew; got < tc.want-time.Minute || got > tc.want+time.Minute {
			t.Errorf("validity_duration %d: got %s, want %s", tc.ask, got, tc.want)
		}
	}
}

func TestCreateCertificateRefusals(t *testing.T) {
	s, tokens := localCA(t, t.TempDir())
	client := serve(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	front := "spiffe://cluster.local/ns/shop/sa/front"
	back := "spiffe://cluster.local/ns/shop/sa/back"
	csrBack, _ := csrFor(t, back)
	csrFront, _ := csrFor(t, front)
	csrTwo, _ := csrFor(t, front, back)
	csrNone, _ := csrFor(t)
	tests := []struct {
		name  string
		ctx   context.Context
		csr   string
		ttl   int64
		code  codes.Code
		parts []string
	}{
		{"another workload's identity", withToken(ctx, tokens["front"]), csrBack, 0, codes.PermissionDenied, []string{"asks for " + back, "caller is " + front}},
		{"its own and another", withToken(ctx, tokens["front"]), csrTwo, 0, codes.PermissionDenied, []string{back, "caller is " + front}},
		{"no SAN", withToken(ctx, tokens["front"]), csrNone, 0, codes.PermissionDenied, []string{"no SAN"}},
		{"no token", ctx, csrFront, 0, codes.Unauthenticated, []string{"authorization: Bearer"}},
		{"unknown token", withToken(ctx, "0123"), csrFront, 0, codes.Unauthenticated, []string{"unknown workload credential"}},
		{"not a CSR", withToken(ctx, tokens["front"]), "hello", 0, codes.InvalidArgument, []string{"CERTIFICATE REQUEST"}},
		{"negative validity", withToken(ctx, tokens["front"]), csrFront, -5, codes.InvalidArgument, []string{"validity_duration"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.CreateCertificate(tc.ctx, &securityv1alpha1.IstioCertificateRequest{Csr: tc.csr, ValidityDuration: tc.ttl})
			st, _ := status.FromError(err)
			if st.Code() != tc.code {
				t.Fatalf("got %v, want code %v", err, tc.code)
			}
			for _, p := range tc.parts {
				if !strings.Contains(st.Message(), p) {
					t.Errorf("message %q does not contain %q", st.Message(), p)
				}
			}
		})
	}
}

// The self-signed root is made once and reused: a restarted trellisd
// (a new Load of the same directory) serves the same root.
func TestSelfSignedRootPersists(t *testing.T) {
	dir := t.TempDir()
	s1, _ := localCA(t, dir)
	s2, tokens := localCA(t, dir)
	if !s1.Authority.Certificate().Equal(s2.Authority.Certificate()) {
		t.Fatal("root changed across restarts")
	}
	root := s1.Authority.Certificate()
	if !root.IsCA || root.NotAfter.Sub(root.NotBefore) < RootTTL || root.PublicKeyAlgorithm != x509.RSA {
		t.Errorf("root: CA %v, lifetime %s, key %v; want a 10-year RSA CA", root.IsCA, root.NotAfter.Sub(root.NotBefore), root.PublicKeyAlgorithm)
	}
	fi, err := os.Stat(filepath.Join(dir, "ca", CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode: got %v, want 0600", CAKeyFile, fi.Mode().Perm())
	}
	// A certificate from the restarted CA verifies against the first root.
	client := serve(t, s2)
	csr, _ := csrFor(t, "spiffe://cluster.local/ns/shop/sa/back")
	resp, err := client.CreateCertificate(withToken(context.Background(), tokens["back"]), &securityv1alpha1.IstioCertificateRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	leaf := verifyChain(t, resp.GetCertChain())
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("leaf from the restarted CA does not verify against the first root: %v", err)
	}
}

// Istio's cacerts, when present, are used: the intermediate signs leaves,
// the answer carries cert-chain.pem and root-cert.pem, no self-signed root
// is made.
func TestPluggedInCACerts(t *testing.T) {
	dir := t.TempDir()
	root := newTestCA(t, "root", nil)
	inter := newTestCA(t, "intermediate", root)
	writeCACerts(t, filepath.Join(dir, "cacerts"), inter, root, root.pem)
	a, err := Load(context.Background(), Dir(filepath.Join(dir, "cacerts")), Dir(filepath.Join(dir, "ca")), "cluster.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !a.Plugged() {
		t.Fatal("plugged-in CA not used")
	}
	if _, err := os.Stat(filepath.Join(dir, "ca")); !os.IsNotExist(err) {
		t.Errorf("a self-signed CA was made beside the plugged-in one: %v", err)
	}
	tok, _ := NewToken()
	cred := filepath.Join(dir, "cred")
	WriteCredentials(cred, map[string]Caller{tok: {"shop", "front"}})
	client := serve(t, &Server{Authority: a, Auth: Credentials{Path: cred}})
	csr, _ := csrFor(t, "spiffe://cluster.local/ns/shop/sa/front")
	resp, err := client.CreateCertificate(withToken(context.Background(), tok), &securityv1alpha1.IstioCertificateRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	chain := resp.GetCertChain()
	leaf := verifyChain(t, chain)
	if len(chain) != 3 {
		t.Fatalf("got %d chain elements, want leaf, cert-chain, root", len(chain))
	}
	if leaf.Issuer.CommonName != "intermediate" {
		t.Errorf("leaf issuer: got %q, want the plugged-in intermediate", leaf.Issuer.CommonName)
	}
	if roots, _ := parseCerts([]byte(chain[2])); len(roots) != 1 || !roots[0].Equal(root.cert) {
		t.Errorf("last element: want root-cert.pem")
	}
}

func TestPluggedInCACertsInvalid(t *testing.T) {
	root := newTestCA(t, "root", nil)
	inter := newTestCA(t, "intermediate", root)
	other := newTestCA(t, "other", nil)
	tests := []struct {
		name string
		edit func(dir string)
		want string
	}{
		{"missing root", func(d string) { os.Remove(filepath.Join(d, RootCertFile)) }, "missing [root-cert.pem]"},
		{"key of another CA", func(d string) { os.WriteFile(filepath.Join(d, CAKeyFile), other.keyPEM(t), 0o600) }, "ca-key.pem does not hold the private key of ca-cert.pem"},
		{"foreign root", func(d string) { os.WriteFile(filepath.Join(d, RootCertFile), other.pem, 0o600) }, "does not chain to root-cert.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "cacerts")
			writeCACerts(t, d, inter, root, root.pem)
			tc.edit(d)
			_, err := Load(context.Background(), Dir(d), Dir(t.TempDir()), "cluster.local", time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// Root rotation, as docs/security.md describes it: move from the
// self-signed root to a new root by plugging in an intermediate of the new
// root with a trust bundle holding both; certificates of the old root keep
// verifying until the old root is dropped from the bundle.
func TestRootRotation(t *testing.T) {
	dir := t.TempDir()
	s, tokens := localCA(t, dir)
	front := "spiffe://cluster.local/ns/shop/sa/front"
	csr, _ := csrFor(t, front)
	ctx := withToken(context.Background(), tokens["front"])
	old, err := serve(t, s).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	oldLeaf := verifyChain(t, old.GetCertChain())
	oldRoot := s.Authority.RootsPEM()

	// Step 1: new root and intermediate, bundle = new root + old root.
	newRoot := newTestCA(t, "root-2", nil)
	inter := newTestCA(t, "intermediate-2", newRoot)
	cacerts := filepath.Join(dir, "cacerts")
	writeCACerts(t, cacerts, inter, newRoot, append(append([]byte{}, newRoot.pem...), oldRoot...))
	a, err := Load(context.Background(), Dir(cacerts), Dir(filepath.Join(dir, "ca")), "cluster.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.Authority = a
	resp, err := serve(t, s).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	newLeaf := verifyChain(t, resp.GetCertChain())
	if newLeaf.Issuer.CommonName != "intermediate-2" {
		t.Errorf("after plugging in: issuer %q, want intermediate-2", newLeaf.Issuer.CommonName)
	}
	bundle := resp.GetCertChain()[len(resp.GetCertChain())-1]
	if roots, _ := parseCerts([]byte(bundle)); len(roots) != 2 {
		t.Fatalf("trust bundle during rotation: got %d roots, want 2 (new and old)", len(roots))
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(bundle))
	if _, err := oldLeaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("a certificate of the old root no longer verifies during rotation: %v", err)
	}

	// Step 2: once every leaf is from the new root, drop the old one.
	writeCACerts(t, cacerts, inter, newRoot, newRoot.pem)
	if a, err = Load(context.Background(), Dir(cacerts), Dir(filepath.Join(dir, "ca")), "cluster.local", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := oldLeaf.Verify(x509.VerifyOptions{Roots: a.Roots(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("the old root is still trusted after it was dropped from root-cert.pem")
	}
}

// Two trellisd starting at once on one directory end with one root.
func TestSelfSignedRootRace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	got := make(chan *Authority, 2)
	for range 2 {
		go func() {
			a, err := Load(context.Background(), nil, Dir(dir), "cluster.local", time.Now())
			if err != nil {
				t.Error(err)
			}
			got <- a
		}()
	}
	a, b := <-got, <-got
	if a == nil || b == nil || !a.Certificate().Equal(b.Certificate()) {
		t.Fatal("two roots for one directory")
	}
	// A directory holding something else is not taken over.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("x"), 0o644)
	if _, err := Load(context.Background(), nil, Dir(other), "cluster.local", time.Now()); err == nil || !strings.Contains(err.Error(), "holds no ca-cert.pem") {
		t.Errorf("got %v, want an error saying the directory holds no ca-cert.pem", err)
	}
}

// trellisd's own certificate is renewed once half its lifetime has passed.
func TestServingCertRenewsAtHalfLife(t *testing.T) {
	s, _ := localCA(t, t.TempDir())
	now := time.Now()
	c := &ServingCerts{Authority: s.Authority, DNSNames: []string{"trellisd"}, TTL: 10 * time.Hour, Now: func() time.Time { return now }}
	first, err := c.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Leaf.Verify(x509.VerifyOptions{DNSName: "trellisd", Roots: s.Authority.Roots()}); err != nil {
		t.Fatalf("serving certificate: %v", err)
	}
	now = now.Add(4 * time.Hour)
	if again, _ := c.GetCertificate(nil); again != first {
		t.Error("renewed before half its lifetime")
	}
	now = now.Add(2 * time.Hour)
	if again, _ := c.GetCertificate(nil); again == first || !again.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Error("not renewed after half its lifetime")
	}
}
