package jwt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

type key struct {
	signer jose.Signer
	jwks   string
}

func newKey(t testing.TB, alg jose.SignatureAlgorithm, kid string) key {
	t.Helper()
	var priv, pub any
	switch alg {
	case jose.ES256:
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		priv, pub = k, &k.PublicKey
	default:
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		priv, pub = k, &k.PublicKey
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: kid, Algorithm: string(alg), Use: "sig"}}})
	return key{s, string(b)}
}

func (k key) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(claims)
	o, err := k.signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := o.CompactSerialize()
	return s
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.PS256} {
		k := newKey(t, alg, "k1")
		other := newKey(t, alg, "k1")
		p, err := NewProvider("https://issuer.example", []string{"app"}, k.jwks)
		if err != nil {
			t.Fatal(err)
		}
		base := func() map[string]any {
			return map[string]any{"iss": "https://issuer.example", "sub": "alice", "aud": []string{"x", "app"}, "exp": now.Unix() + 60, "groups": []string{"dev"}}
		}
		with := func(k string, v any) map[string]any { m := base(); m[k] = v; return m }
		for _, c := range []struct {
			name  string
			token string
			want  error
		}{
			{"valid", k.sign(t, base()), nil},
			{"exp within skew", k.sign(t, with("exp", now.Unix()-30)), nil},
			{"expired", k.sign(t, with("exp", now.Unix()-61)), ErrExpired},
			{"not yet valid", k.sign(t, with("nbf", now.Unix()+120)), ErrNotYetValid},
			{"other key", other.sign(t, base()), ErrVerify},
			{"wrong issuer", k.sign(t, with("iss", "https://evil.example")), ErrIssuer},
			{"wrong audience", k.sign(t, with("aud", "other")), ErrAudience},
			{"malformed", "abc.def", ErrMalformed},
		} {
			got, err := p.Verify(c.token, now)
			if !errors.Is(err, c.want) {
				t.Errorf("%s %s: err %v, want %v", alg, c.name, err, c.want)
			}
			if err == nil && (got.Principal() != "https://issuer.example/alice" || len(got.Audiences) != 2) {
				t.Errorf("%s %s: claims %+v", alg, c.name, got)
			}
		}
	}
}

func TestNewProviderRejectsBadJWKS(t *testing.T) {
	if _, err := NewProvider("i", nil, `{"keys": [{"kty": "RSA"}]}`); err == nil {
		t.Error("a key without material was accepted")
	}
	if _, err := NewProvider("i", nil, `not json`); err == nil {
		t.Error("invalid JSON was accepted")
	}
}

// BenchmarkVerify measures one token verification per algorithm.
func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		k := newKey(b, alg, "k1")
		p, _ := NewProvider("iss", nil, k.jwks)
		tok := k.sign(b, map[string]any{"iss": "iss", "sub": "alice", "exp": now.Unix() + 3600})
		b.Run(string(alg), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := p.Verify(tok, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
