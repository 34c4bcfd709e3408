package credential

import (
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func TestExtract(t *testing.T) {
	cases := []struct {
		name  string
		data  map[string][]byte
		ok    bool
		cert  string
		hasCA bool
	}{
		{"kubernetes.io/tls", map[string][]byte{"tls.crt": []byte("C"), "tls.key": []byte("K")}, true, "C", false},
		{"generic keys", map[string][]byte{"cert": []byte("C2"), "key": []byte("K2"), "cacert": []byte("A")}, true, "C2", true},
		{"ca only", map[string][]byte{"ca.crt": []byte("A")}, true, "", true},
		{"cert without key", map[string][]byte{"tls.crt": []byte("C")}, false, "C", false},
		{"unrelated", map[string][]byte{"password": []byte("x")}, false, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Extract(c.data)
			if ok != c.ok || string(got.CertChain) != c.cert || (got.CACert != nil) != c.hasCA {
				t.Errorf("got ok=%v cert=%q ca=%v, want ok=%v cert=%q ca=%v", ok, got.CertChain, got.CACert != nil, c.ok, c.cert, c.hasCA)
			}
		})
	}
}

func TestWatcherFromAPIServer(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := kubetest.Context(t)
	kc := env.Clients.Kube
	ns := "gw-creds"
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, typ corev1.SecretType, data map[string][]byte) {
		if _, err := kc.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: typ, Data: data}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("zhongmingmao-credential", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": []byte("CERT"), "tls.key": []byte("KEY")})
	mk("zhongmingmao-credential-cacert", corev1.SecretTypeOpaque, map[string][]byte{"ca.crt": []byte("CA")})
	mk("db-password", corev1.SecretTypeOpaque, map[string][]byte{"password": []byte("x")})

	w := New(kc, "")
	changed := make(chan struct{}, 10)
	w.Subscribe(func() { changed <- struct{}{} })
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	creds := w.Credentials()
	c := creds[ns+"/zhongmingmao-credential"]
	if c == nil || string(c.CertChain) != "CERT" || string(c.PrivateKey) != "KEY" || string(c.CACert) != "CA" {
		t.Fatalf("credential: got %+v, want CERT/KEY with CA from the -cacert secret", c)
	}
	if _, ok := creds[ns+"/db-password"]; ok {
		t.Errorf("a secret without TLS material was kept")
	}

	s, _ := kc.CoreV1().Secrets(ns).Get(ctx, "zhongmingmao-credential", metav1.GetOptions{})
	s.Data["tls.crt"] = []byte("CERT2")
	if _, err := kc.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for string(w.Credentials()[ns+"/zhongmingmao-credential"].CertChain) != "CERT2" {
		if time.Now().After(deadline) {
			t.Fatal("rotated certificate not seen")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Errorf("subscriber not called")
	}
}
