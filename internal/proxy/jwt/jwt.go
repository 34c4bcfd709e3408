package jwt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// ClockSkew is how far exp and nbf may be off, Envoy's default
// clock_skew_seconds.
const ClockSkew = 60 * time.Second

// The verification failures, worded as Envoy's jwt_authn words them in
// its 401 bodies.
var (
	ErrMalformed   = errors.New("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")
	ErrExpired     = errors.New("Jwt is expired")
	ErrNotYetValid = errors.New("Jwt not yet valid")
	ErrVerify      = errors.New("Jwt verification fails")
	ErrIssuer      = errors.New("Jwt issuer is not configured")
	ErrAudience    = errors.New("Audiences in Jwt are not allowed")
	ErrNoKey       = errors.New("Jwks doesn't have key to match kid or alg from Jwt")
)

// algorithms are the signature algorithms accepted, those of Envoy's
// jwt_authn.
var algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
	jose.HS256, jose.HS384, jose.HS512,
}

// Provider verifies tokens of one issuer. It is immutable and safe for
// concurrent use.
type Provider struct {
	// Issuer is the required iss claim; "" accepts any issuer.
	Issuer string
	// Audiences are the accepted aud values; empty accepts any.
	Audiences []string
	keys      jose.JSONWebKeySet
}

// NewProvider compiles a provider from its JWKS document (JSON).
func NewProvider(issuer string, audiences []string, jwks string) (*Provider, error) {
	p := &Provider{Issuer: issuer, Audiences: audiences}
	if err := json.Unmarshal([]byte(jwks), &p.keys); err != nil {
		return nil, fmt.Errorf("invalid JWKS: %v", err)
	}
	for i, k := range p.keys.Keys {
		if !k.Valid() {
			return nil, fmt.Errorf("invalid JWKS: key %d is not valid", i)
		}
		if !k.IsPublic() && k.Algorithm != "" && !strings.HasPrefix(k.Algorithm, "HS") {
			return nil, fmt.Errorf("invalid JWKS: key %d is a private key", i)
		}
	}
	return p, nil
}

// Claims are a verified token's claims.
type Claims struct {
	Issuer, Subject string
	// Presenter is the azp claim.
	Presenter string
	Audiences []string
	// All holds every claim as decoded JSON (numbers as float64).
	All map[string]any
	// Payload is the token's payload segment as sent (base64url).
	Payload string
}

// Principal is Istio's request principal: iss/sub.
func (c *Claims) Principal() string { return c.Issuer + "/" + c.Subject }

// UnverifiedIssuer returns the iss claim of a token without checking it,
// to pick the provider that verifies it; "" when it has none or the token
// is malformed.
func UnverifiedIssuer(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Iss
}

// Verify checks the token's signature, times (against now), issuer and
// audiences, and returns its claims.
func (p *Provider) Verify(token string, now time.Time) (*Claims, error) {
	if strings.Count(token, ".") != 2 {
		return nil, ErrMalformed
	}
	jws, err := jose.ParseSignedCompact(token, algorithms)
	if err != nil {
		return nil, ErrMalformed
	}
	if len(jws.Signatures) != 1 {
		return nil, ErrMalformed
	}
	h := jws.Signatures[0].Header
	keys := p.keys.Keys
	if h.KeyID != "" {
		keys = p.keys.Key(h.KeyID)
	}
	var payload []byte
	tried := false
	for i := range keys {
		k := &keys[i]
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		tried = true
		if b, err := jws.Verify(k.Key); err == nil {
			payload = b
			break
		}
	}
	if payload == nil {
		if !tried {
			return nil, ErrNoKey
		}
		return nil, ErrVerify
	}
	c := &Claims{Payload: token[strings.IndexByte(token, '.')+1 : strings.LastIndexByte(token, '.')]}
	d := json.NewDecoder(bytes.NewReader(payload))
	if err := d.Decode(&c.All); err != nil {
		return nil, ErrVerify
	}
	c.Issuer, _ = c.All["iss"].(string)
	c.Subject, _ = c.All["sub"].(string)
	c.Presenter, _ = c.All["azp"].(string)
	switch a := c.All["aud"].(type) {
	case string:
		c.Audiences = []string{a}
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok {
				c.Audiences = append(c.Audiences, s)
			}
		}
	}
	if exp, ok := c.All["exp"].(float64); ok && now.After(unix(exp).Add(ClockSkew)) {
		return nil, ErrExpired
	}
	if nbf, ok := c.All["nbf"].(float64); ok && now.Add(ClockSkew).Before(unix(nbf)) {
		return nil, ErrNotYetValid
	}
	if p.Issuer != "" && c.Issuer != p.Issuer {
		return nil, ErrIssuer
	}
	if len(p.Audiences) > 0 && !anyIn(c.Audiences, p.Audiences) {
		return nil, ErrAudience
	}
	return c, nil
}

func unix(f float64) time.Time {
	s := int64(f)
	return time.Unix(s, int64((f-float64(s))*1e9))
}

func anyIn(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}
