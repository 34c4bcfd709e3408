package filter

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/jwt"
)

// jwtAuthn is envoy.filters.http.jwt_authn: it verifies the request's
// JWT against the configured providers and records the verified claims
// as the exchange's authn metadata (Stream.Authn), which RBAC metadata
// principals match.
var jwtAuthn = newBuilder("envoy.filters.http.jwt_authn", compileJWT)

// Authn is the exchange's JWT authentication metadata, Envoy's dynamic
// metadata under envoy.filters.http.jwt_authn (and the istio_authn keys
// Istio derives from it). The zero value means no verified token.
type Authn struct {
	// Claims of the verified token; nil when none.
	Claims *jwt.Claims
	// MetadataKey is the provider's payload_in_metadata key ("" when the
	// provider does not set one).
	MetadataKey string
}

// jwtLocation is where a provider looks for its token.
type jwtLocation struct {
	header, prefix string // from a header, after prefix
	param          string // from a query parameter
	cookie         string // from a cookie
}

type jwtProvider struct {
	name        string
	p           *jwt.Provider
	from        []jwtLocation
	forward     bool
	payloadHdr  string
	claimHdrs   [][2]string // header name, claim name
	metadataKey string
	skew        time.Duration
}

// jwtFilter is a compiled jwt_authn config with one requirement for
// every route.
type jwtFilter struct {
	providers []*jwtProvider
	// allowMissing lets a request without a token through; allowFailed
	// lets one with an invalid token through too.
	allowMissing, allowFailed bool
	bypassCORS                bool
	now                       func() time.Time
}

func compileJWT(c *jwtauthnv3.JwtAuthentication, path string) (Filter, error) {
	switch {
	case len(c.GetFilterStateRules().GetRequires()) > 0 || c.GetFilterStateRules() != nil:
		return nil, fmt.Errorf("%s.filter_state_rules: not supported by trellis-proxy", path)
	case len(c.GetRequirementMap()) > 0:
		return nil, fmt.Errorf("%s.requirement_map: not supported by trellis-proxy (per-route requirements); use one rules entry", path)
	case c.GetStripFailureResponse():
		return nil, fmt.Errorf("%s.strip_failure_response: not supported by trellis-proxy", path)
	}
	byName := map[string]*jwtProvider{}
	names := make([]string, 0, len(c.GetProviders()))
	for n := range c.GetProviders() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p, err := compileJWTProvider(n, c.GetProviders()[n], fmt.Sprintf("%s.providers[%q]", path, n))
		if err != nil {
			return nil, err
		}
		byName[n] = p
	}
	f := &jwtFilter{bypassCORS: c.GetBypassCorsPreflight(), now: time.Now}
	if len(c.GetRules()) != 1 {
		return nil, fmt.Errorf("%s.rules: trellis-proxy supports exactly one rule (match prefix \"/\"), as Istio emits; got %d", path, len(c.GetRules()))
	}
	r := c.GetRules()[0]
	rpath := path + ".rules[0]"
	if m := r.GetMatch(); m.GetPrefix() != "/" || len(m.GetHeaders()) > 0 || len(m.GetQueryParameters()) > 0 || m.GetGrpc() != nil {
		return nil, fmt.Errorf("%s.match: only {prefix: \"/\"} is supported by trellis-proxy", rpath)
	}
	if r.GetRequirementName() != "" {
		return nil, fmt.Errorf("%s.requirement_name: not supported by trellis-proxy; use requires", rpath)
	}
	add := func(name, p string) error {
		prov := byName[name]
		if prov == nil {
			return fmt.Errorf("%s.provider_name: %q is not a configured provider", p, name)
		}
		f.providers = append(f.providers, prov)
		return nil
	}
	req := r.GetRequires()
	qpath := rpath + ".requires"
	switch t := req.GetRequiresType().(type) {
	case *jwtauthnv3.JwtRequirement_ProviderName:
		if err := add(t.ProviderName, qpath); err != nil {
			return nil, err
		}
	case *jwtauthnv3.JwtRequirement_RequiresAny:
		for i, sub := range t.RequiresAny.GetRequirements() {
			spath := fmt.Sprintf("%s.requires_any.requirements[%d]", qpath, i)
			switch st := sub.GetRequiresType().(type) {
			case *jwtauthnv3.JwtRequirement_ProviderName:
				if err := add(st.ProviderName, spath); err != nil {
					return nil, err
				}
			case *jwtauthnv3.JwtRequirement_AllowMissing:
				f.allowMissing = true
			case *jwtauthnv3.JwtRequirement_AllowMissingOrFailed:
				f.allowMissing, f.allowFailed = true, true
			default:
				return nil, fmt.Errorf("%s: %T is not supported by trellis-proxy inside requires_any; use provider_name, allow_missing or allow_missing_or_failed", spath, st)
			}
		}
	case *jwtauthnv3.JwtRequirement_AllowMissing:
		f.allowMissing = true
		f.providers = append(f.providers, sortedProviders(byName, names)...)
	case *jwtauthnv3.JwtRequirement_AllowMissingOrFailed:
		f.allowMissing, f.allowFailed = true, true
		f.providers = append(f.providers, sortedProviders(byName, names)...)
	case nil:
		return nil, fmt.Errorf("%s: must be set", qpath)
	default:
		return nil, fmt.Errorf("%s: %T is not supported by trellis-proxy; use provider_name or requires_any of provider_name and allow_missing", qpath, t)
	}
	return f, nil
}

func sortedProviders(m map[string]*jwtProvider, names []string) []*jwtProvider {
	var out []*jwtProvider
	for _, n := range names {
		out = append(out, m[n])
	}
	return out
}

func compileJWTProvider(name string, c *jwtauthnv3.JwtProvider, path string) (*jwtProvider, error) {
	switch {
	case c.GetRemoteJwks() != nil:
		return nil, fmt.Errorf("%s.remote_jwks: not supported by trellis-proxy (it has no egress to fetch keys); inline the JWKS in local_jwks (trellisd does)", path)
	case c.GetSubjects() != nil:
		return nil, fmt.Errorf("%s.subjects: not supported by trellis-proxy", path)
	case c.GetRequireExpiration() || c.GetMaxLifetime() != nil:
		return nil, fmt.Errorf("%s.require_expiration, max_lifetime: not supported by trellis-proxy", path)
	case c.GetHeaderInMetadata() != "" || c.GetFailedStatusInMetadata() != "" || c.GetNormalizePayloadInMetadata() != nil:
		return nil, fmt.Errorf("%s: header_in_metadata, failed_status_in_metadata and normalize_payload_in_metadata are not supported by trellis-proxy", path)
	case c.GetPadForwardPayloadHeader():
		return nil, fmt.Errorf("%s.pad_forward_payload_header: not supported by trellis-proxy", path)
	case c.GetClearRouteCache():
		return nil, fmt.Errorf("%s.clear_route_cache: not supported by trellis-proxy (routes are selected before the filters)", path)
	}
	lj := c.GetLocalJwks()
	if lj == nil {
		return nil, fmt.Errorf("%s.local_jwks: must be set", path)
	}
	var jwks string
	switch {
	case lj.GetInlineString() != "":
		jwks = lj.GetInlineString()
	case len(lj.GetInlineBytes()) > 0:
		jwks = string(lj.GetInlineBytes())
	default:
		return nil, fmt.Errorf("%s.local_jwks: only inline_string and inline_bytes are supported by trellis-proxy", path)
	}
	p, err := jwt.NewProvider(c.GetIssuer(), c.GetAudiences(), jwks)
	if err != nil {
		return nil, fmt.Errorf("%s.local_jwks: %v", path, err)
	}
	out := &jwtProvider{name: name, p: p, forward: c.GetForward(), payloadHdr: strings.ToLower(c.GetForwardPayloadHeader()),
		metadataKey: c.GetPayloadInMetadata(), skew: jwt.ClockSkew}
	if c.GetClockSkewSeconds() != 0 {
		out.skew = time.Duration(c.GetClockSkewSeconds()) * time.Second
	}
	for i, h := range c.GetFromHeaders() {
		if h.GetName() == "" {
			return nil, fmt.Errorf("%s.from_headers[%d].name: must not be empty", path, i)
		}
		out.from = append(out.from, jwtLocation{header: strings.ToLower(h.GetName()), prefix: h.GetValuePrefix()})
	}
	for _, q := range c.GetFromParams() {
		out.from = append(out.from, jwtLocation{param: q})
	}
	for _, k := range c.GetFromCookies() {
		out.from = append(out.from, jwtLocation{cookie: k})
	}
	if len(out.from) == 0 {
		// Envoy's default locations.
		out.from = []jwtLocation{{header: "authorization", prefix: "Bearer "}, {param: "access_token"}}
	}
	for i, ch := range c.GetClaimToHeaders() {
		if ch.GetHeaderName() == "" || ch.GetClaimName() == "" {
			return nil, fmt.Errorf("%s.claim_to_headers[%d]: header_name and claim_name must be set", path, i)
		}
		if ch.GetClaimPath() != nil {
			return nil, fmt.Errorf("%s.claim_to_headers[%d].claim_path: not supported by trellis-proxy; use claim_name", path, i)
		}
		out.claimHdrs = append(out.claimHdrs, [2]string{strings.ToLower(ch.GetHeaderName()), ch.GetClaimName()})
	}
	return out, nil
}

// extract returns the token at l, if the request has one.
func (l *jwtLocation) extract(s Stream) (string, bool) {
	switch {
	case l.header != "":
		v, ok := s.Header(l.header)
		if !ok {
			return "", false
		}
		if l.prefix != "" {
			i := bytes.Index(v, []byte(l.prefix))
			if i < 0 {
				return "", false
			}
			v = v[i+len(l.prefix):]
			if j := bytes.IndexByte(v, ','); j >= 0 {
				v = v[:j]
			}
		}
		v = bytes.TrimSpace(v)
		return string(v), len(v) > 0
	case l.param != "":
		p := s.Path()
		i := bytes.IndexByte(p, '?')
		if i < 0 {
			return "", false
		}
		for _, kv := range strings.Split(string(p[i+1:]), "&") {
			k, v, _ := strings.Cut(kv, "=")
			if k == l.param && v != "" {
				return v, true
			}
		}
	case l.cookie != "":
		v, ok := s.Header("cookie")
		if !ok {
			return "", false
		}
		for _, c := range strings.Split(string(v), ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(c), "=")
			if k == l.cookie && val != "" {
				return strings.Trim(val, `"`), true
			}
		}
	}
	return "", false
}

// Decode finds the request's token: the first location of a provider
// that holds one, preferring the provider whose issuer the token names.
// A verified token's claims become the exchange's authn metadata; a
// token that fails verification gets 401 with Envoy's reason (unless the
// requirement allows failures); no token passes when allow_missing is
// set, else 401 "Jwt is missing".
func (f *jwtFilter) Decode(s Stream, _ any) Status {
	if f.bypassCORS && string(s.Method()) == "OPTIONS" {
		if _, ok := s.Header("origin"); ok {
			if _, ok := s.Header("access-control-request-method"); ok {
				return Continue
			}
		}
	}
	var failure error
	for _, p := range f.providers {
		for i := range p.from {
			l := &p.from[i]
			tok, ok := l.extract(s)
			if !ok {
				continue
			}
			if iss := jwt.UnverifiedIssuer(tok); p.p.Issuer != "" && iss != p.p.Issuer {
				// Envoy picks the provider by the token's issuer: one
				// no provider here names is refused as such.
				if !f.otherProviderTakes(iss, l) && failure == nil {
					failure = jwt.ErrIssuer
				}
				continue
			}
			c, err := p.p.Verify(tok, f.now())
			if err != nil {
				if failure == nil {
					failure = err
				}
				continue
			}
			a := s.Authn()
			a.Claims, a.MetadataKey = c, p.metadataKey
			if !p.forward && l.header != "" {
				s.DelRequestHeader(l.header)
			}
			if p.payloadHdr != "" {
				s.SetRequestHeader(p.payloadHdr, []byte(c.Payload))
			}
			for _, h := range p.claimHdrs {
				if v, ok := claimString(c.All[h[1]]); ok {
					s.SetRequestHeader(h[0], []byte(v))
				}
			}
			return Continue
		}
	}
	switch {
	case failure != nil && !f.allowFailed:
		s.Unauthorized(failure.Error(), "jwt_authn_access_denied{"+strings.ReplaceAll(failure.Error(), " ", "_")+"}")
		return Stop
	case failure == nil && !f.allowMissing:
		s.Unauthorized("Jwt is missing", "jwt_authn_access_denied{Jwt_is_missing}")
		return Stop
	}
	return Continue
}

// otherProviderTakes reports whether another provider reading location
// l verifies tokens of issuer iss.
func (f *jwtFilter) otherProviderTakes(iss string, l *jwtLocation) bool {
	for _, p := range f.providers {
		if p.p.Issuer != iss {
			continue
		}
		for i := range p.from {
			if p.from[i] == *l {
				return true
			}
		}
	}
	return false
}

// claimString is a claim as a header value: strings as they are, numbers
// and booleans formatted, lists of strings comma-joined (as Envoy does).
func claimString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case []any:
		var parts []string
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), len(parts) > 0
	}
	return "", false
}
