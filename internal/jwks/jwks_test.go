package jwks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func publicJWKS(t *testing.T) string {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "a", Algorithm: "ES256", Use: "sig"}}})
	return string(b)
}

// TestFetcherRetriesAndRefreshes serves a failing JWKS endpoint, then a
// good document, then a rotated one: the failure is retried and logged
// with the resource, the good document appears, the rotation is picked up
// by the periodic refresh, and each change notifies subscribers.
func TestFetcherRetriesAndRefreshes(t *testing.T) {
	first, second := publicJWKS(t), publicJWKS(t)
	var state atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch state.Load() {
		case 0:
			http.Error(w, "down", http.StatusServiceUnavailable)
		case 1:
			w.Write([]byte(first))
		default:
			w.Write([]byte(second))
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := New(ctx)
	f.Refresh, f.Retry = 50*time.Millisecond, 20*time.Millisecond
	var logs atomic.Value
	logs.Store("")
	f.Logf = func(format string, args ...any) { logs.Store(logs.Load().(string) + "\n" + format) }
	notified := make(chan struct{}, 100)
	f.Subscribe(func() { notified <- struct{}{} })
	uri := srv.URL + "/jwks.json"
	f.Sync(map[string][]string{uri: {"default/jwt"}})

	<-notified // first failure
	if fs := f.Failures(); len(fs) != 1 || fs[0].URI != uri || fs[0].Resources[0] != "default/jwt" || fs[0].Stale {
		t.Fatalf("failures %+v", fs)
	}
	if d := f.Documents(); len(d) != 0 {
		t.Fatalf("documents before a good fetch: %v", d)
	}
	state.Store(1)
	waitDoc(t, f, notified, uri, first)
	state.Store(2)
	waitDoc(t, f, notified, uri, second)
	if !strings.Contains(logs.Load().(string), "RequestAuthentication %s failed") {
		t.Errorf("no failure log: %s", logs.Load())
	}
	f.Sync(nil)
	if d := f.Documents(); len(d) != 0 {
		t.Errorf("documents after the URI was dropped: %v", d)
	}
}

func waitDoc(t *testing.T, f *Fetcher, notified chan struct{}, uri, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if f.Documents()[uri] == want {
			return
		}
		select {
		case <-notified:
		case <-deadline:
			t.Fatalf("document for %s never became the served one", uri)
		}
	}
}

func TestFetchRejectsNonJWKS(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"keys": []}`)) }))
	defer srv.Close()
	f := New(context.Background())
	if _, err := f.fetch(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), "no usable keys") {
		t.Errorf("empty key set: %v", err)
	}
}
