package route

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
)

// DefaultTimeout is Envoy's route timeout when the route does not set one.
const DefaultTimeout = 15 * time.Second

func (r *Route) compileAction(a *routev3.RouteAction, path string) error {
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return fmt.Errorf("%s.cluster: must not be empty", path)
		}
		r.Clusters = []WeightedCluster{{Name: cs.Cluster, Weight: 1}}
		r.totalWeight = 1
	case *routev3.RouteAction_WeightedClusters:
		wc := cs.WeightedClusters
		if len(wc.GetClusters()) == 0 {
			return fmt.Errorf("%s.weighted_clusters.clusters: at least one cluster is required", path)
		}
		var sum uint64
		for i, c := range wc.GetClusters() {
			cpath := fmt.Sprintf("%s.weighted_clusters.clusters[%d]", path, i)
			if c.GetName() == "" {
				return fmt.Errorf("%s.name: must not be empty (cluster_header is not supported)", cpath)
			}
			if len(c.GetTypedPerFilterConfig()) > 0 {
				return fmt.Errorf("%s.typed_per_filter_config: per-filter config on a weighted cluster is not supported; set it on the route", cpath)
			}
			ops, err := compileHeaderOps(c.GetRequestHeadersToAdd(), c.GetRequestHeadersToRemove(), c.GetResponseHeadersToAdd(), c.GetResponseHeadersToRemove(), cpath)
			if err != nil {
				return err
			}
			w := uint64(c.GetWeight().GetValue())
			sum += w
			r.Clusters = append(r.Clusters, WeightedCluster{Name: c.GetName(), Weight: w, Headers: ops, HostRewrite: c.GetHostRewriteLiteral()})
		}
		if tw := wc.GetTotalWeight(); tw != nil && uint64(tw.GetValue()) != sum {
			return fmt.Errorf("%s.weighted_clusters.total_weight: %d, but the weights sum to %d", path, tw.GetValue(), sum)
		}
		if sum == 0 {
			return fmt.Errorf("%s.weighted_clusters: the weights sum to 0", path)
		}
		r.totalWeight = sum
	default:
		return fmt.Errorf("%s: unsupported cluster specifier %T; use cluster or weighted_clusters", path, cs)
	}
	r.PrefixRewrite = a.GetPrefixRewrite()
	if rr := a.GetRegexRewrite(); rr != nil {
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil {
			return fmt.Errorf("%s.regex_rewrite.pattern.regex: %w", path, err)
		}
		r.RegexRewrite = re
		r.RegexSubst = envoySubstitution(rr.GetSubstitution())
	}
	if a.GetPathRewritePolicy() != nil {
		return fmt.Errorf("%s.path_rewrite_policy: not supported; use prefix_rewrite or regex_rewrite", path)
	}
	switch hr := a.GetHostRewriteSpecifier().(type) {
	case nil:
	case *routev3.RouteAction_HostRewriteLiteral:
		r.HostRewrite = hr.HostRewriteLiteral
	case *routev3.RouteAction_AutoHostRewrite:
		if hr.AutoHostRewrite.GetValue() {
			return fmt.Errorf("%s.auto_host_rewrite: not supported; use host_rewrite_literal", path)
		}
	default:
		return fmt.Errorf("%s: unsupported host rewrite %T; use host_rewrite_literal", path, hr)
	}
	r.Timeout = DefaultTimeout
	if t := a.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			return fmt.Errorf("%s.timeout: %w", path, err)
		}
		r.Timeout = t.AsDuration()
	}
	if msd := a.GetMaxStreamDuration().GetMaxStreamDuration(); msd != nil && r.Timeout == 0 {
		r.Timeout = msd.AsDuration()
	}
	if a.GetRetryPolicy() != nil {
		rp, err := compileRetry(a.GetRetryPolicy(), path+".retry_policy")
		if err != nil {
			return err
		}
		r.Retry = rp
	}
	for i, m := range a.GetRequestMirrorPolicies() {
		if m.GetCluster() == "" {
			return fmt.Errorf("%s.request_mirror_policies[%d].cluster: must not be empty", path, i)
		}
		fr := filter.Fraction{Numerator: 100, Denominator: 100}
		if rf := m.GetRuntimeFraction(); rf != nil {
			fr = filter.CompileFraction(rf.GetDefaultValue(), fr)
		}
		r.Mirrors = append(r.Mirrors, Mirror{Cluster: m.GetCluster(), Fraction: fr})
	}
	for i, h := range a.GetHashPolicy() {
		hp, err := compileHash(h, fmt.Sprintf("%s.hash_policy[%d]", path, i))
		if err != nil {
			return err
		}
		r.Hash = append(r.Hash, hp)
	}
	for i, u := range a.GetUpgradeConfigs() {
		if u.GetEnabled() == nil || u.GetEnabled().GetValue() {
			r.Upgrades = append(r.Upgrades, strings.ToLower(u.GetUpgradeType()))
		} else if u.GetUpgradeType() == "" {
			return fmt.Errorf("%s.upgrade_configs[%d].upgrade_type: must not be empty", path, i)
		}
	}
	return nil
}

// envoySubstitution turns Envoy's \N capture references into Go's ${N}.
func envoySubstitution(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			b.WriteString("${")
			b.WriteByte(s[i+1])
			b.WriteByte('}')
			i++
		case c == '$':
			b.WriteString("$$")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (r *Route) compileRedirect(a *routev3.RedirectAction, path string) error {
	rd := &Redirect{Host: a.GetHostRedirect(), Port: a.GetPortRedirect(), StripQuery: a.GetStripQuery()}
	switch s := a.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			rd.Scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		rd.Scheme = strings.ToLower(s.SchemeRedirect)
	}
	switch p := a.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		rd.Path = p.PathRedirect
	case *routev3.RedirectAction_PrefixRewrite:
		rd.PrefixRewrite = p.PrefixRewrite
		r.PrefixRewrite = p.PrefixRewrite
	case nil:
	default:
		return fmt.Errorf("%s: unsupported path rewrite %T; use path_redirect or prefix_rewrite", path, p)
	}
	switch a.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		rd.Code = 301
	case routev3.RedirectAction_FOUND:
		rd.Code = 302
	case routev3.RedirectAction_SEE_OTHER:
		rd.Code = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		rd.Code = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		rd.Code = 308
	}
	r.Redirect = rd
	return nil
}

// Location builds the redirect target for a request.
func (rd *Redirect) Location(r *Route, scheme, authority, reqPath []byte) string {
	sch := rd.Scheme
	if sch == "" {
		sch = string(scheme)
		if sch == "" {
			sch = "http"
		}
	}
	host, port := splitHostPort(string(authority))
	if rd.Host != "" {
		h, p := splitHostPort(rd.Host)
		host = h
		if p != "" {
			port = p
		}
	}
	if rd.Port != 0 {
		port = fmt.Sprint(rd.Port)
	}
	if rd.Scheme != "" && rd.Port == 0 && !strings.Contains(rd.Host, ":") {
		if (sch == "https" && port == "80") || (sch == "http" && port == "443") {
			port = ""
		}
	}
	if (sch == "http" && port == "80") || (sch == "https" && port == "443") {
		port = ""
	}
	p := string(reqPath)
	query := ""
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p, query = p[:i], p[i:]
	}
	switch {
	case rd.Path != "":
		p = rd.Path
		if strings.Contains(rd.Path, "?") {
			query = ""
		}
	case rd.PrefixRewrite != "":
		p = string(r.RewritePath(nil, []byte(p)))
	}
	if rd.StripQuery {
		query = ""
	}
	hp := host
	if port != "" {
		hp = host + ":" + port
	}
	return sch + "://" + hp + p + query
}

func splitHostPort(a string) (string, string) {
	if strings.HasPrefix(a, "[") {
		if i := strings.Index(a, "]:"); i >= 0 {
			return a[:i+1], a[i+2:]
		}
		return a, ""
	}
	if i := strings.LastIndexByte(a, ':'); i >= 0 && !strings.Contains(a[:i], ":") {
		return a[:i], a[i+1:]
	}
	return a, ""
}

// Retry conditions (retry_on), as bits.
const (
	Retry5xx uint32 = 1 << iota
	RetryGatewayError
	RetryReset
	RetryConnectFailure
	RetryRetriable4xx
	RetryRefusedStream
	RetryRetriableStatusCodes
	RetryGRPCCancelled
	RetryGRPCDeadlineExceeded
	RetryGRPCResourceExhausted
	RetryGRPCUnavailable
	RetryGRPCInternal
	RetryResetBeforeRequest
	RetryHTTP3PostConnectFailure
	RetryEnvoyRateLimited
)

var retryOnNames = map[string]uint32{
	"5xx":                        Retry5xx,
	"gateway-error":              RetryGatewayError,
	"reset":                      RetryReset,
	"connect-failure":            RetryConnectFailure,
	"retriable-4xx":              RetryRetriable4xx,
	"refused-stream":             RetryRefusedStream,
	"retriable-status-codes":     RetryRetriableStatusCodes,
	"cancelled":                  RetryGRPCCancelled,
	"deadline-exceeded":          RetryGRPCDeadlineExceeded,
	"resource-exhausted":         RetryGRPCResourceExhausted,
	"unavailable":                RetryGRPCUnavailable,
	"internal":                   RetryGRPCInternal,
	"reset-before-request":       RetryResetBeforeRequest,
	"http3-post-connect-failure": RetryHTTP3PostConnectFailure,
	"envoy-ratelimited":          RetryEnvoyRateLimited,
	"retriable-headers":          0,
}

// RetryPolicy is a compiled RetryPolicy.
type RetryPolicy struct {
	On            uint32
	NumRetries    int
	PerTryTimeout time.Duration
	BaseInterval  time.Duration
	MaxInterval   time.Duration
	StatusCodes   []int
	// PreviousHosts avoids hosts already tried (retry_host_predicate
	// envoy.retry_host_predicates.previous_hosts).
	PreviousHosts bool
	MaxHostPicks  int
}

// ParseRetryOn parses a retry_on string into condition bits.
func ParseRetryOn(s, path string) (uint32, error) {
	var on uint32
	for _, tok := range strings.Split(s, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		bit, ok := retryOnNames[tok]
		if !ok {
			return 0, fmt.Errorf("%s: unknown retry condition %q", path, tok)
		}
		on |= bit
	}
	return on, nil
}

func compileRetry(p *routev3.RetryPolicy, path string) (*RetryPolicy, error) {
	on, err := ParseRetryOn(p.GetRetryOn(), path+".retry_on")
	if err != nil {
		return nil, err
	}
	rp := &RetryPolicy{On: on, NumRetries: 1, BaseInterval: 25 * time.Millisecond, MaxHostPicks: 1}
	if n := p.GetNumRetries(); n != nil {
		rp.NumRetries = int(n.GetValue())
	}
	if t := p.GetPerTryTimeout(); t != nil {
		rp.PerTryTimeout = t.AsDuration()
	}
	if b := p.GetRetryBackOff(); b != nil {
		if bi := b.GetBaseInterval(); bi != nil {
			if bi.AsDuration() <= 0 {
				return nil, fmt.Errorf("%s.retry_back_off.base_interval: must be positive", path)
			}
			rp.BaseInterval = bi.AsDuration()
		}
		if mi := b.GetMaxInterval(); mi != nil {
			rp.MaxInterval = mi.AsDuration()
			if rp.MaxInterval < rp.BaseInterval {
				return nil, fmt.Errorf("%s.retry_back_off.max_interval: %v is less than base_interval %v", path, rp.MaxInterval, rp.BaseInterval)
			}
		}
	}
	if rp.MaxInterval == 0 {
		rp.MaxInterval = 10 * rp.BaseInterval
	}
	for _, c := range p.GetRetriableStatusCodes() {
		rp.StatusCodes = append(rp.StatusCodes, int(c))
	}
	for i, hp := range p.GetRetryHostPredicate() {
		switch hp.GetName() {
		case "envoy.retry_host_predicates.previous_hosts":
			rp.PreviousHosts = true
		default:
			return nil, fmt.Errorf("%s.retry_host_predicate[%d].name: %q is not supported (only envoy.retry_host_predicates.previous_hosts)", path, i, hp.GetName())
		}
	}
	if n := p.GetHostSelectionRetryMaxAttempts(); n > 0 {
		rp.MaxHostPicks = int(n)
	}
	if len(p.GetRetriableHeaders()) > 0 || len(p.GetRetriableRequestHeaders()) > 0 || p.GetRetryPriority() != nil {
		return nil, fmt.Errorf("%s: retriable_headers, retriable_request_headers and retry_priority are not supported", path)
	}
	return rp, nil
}

// BackOff returns the wait before retry n (1-based) using Envoy's fully
// jittered exponential back-off, with the random number rnd.
func (rp *RetryPolicy) BackOff(n int, rnd uint64) time.Duration {
	ceil := rp.BaseInterval
	for i := 1; i < n && ceil < rp.MaxInterval; i++ {
		ceil *= 2
	}
	if ceil > rp.MaxInterval {
		ceil = rp.MaxInterval
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rnd % uint64(ceil))
}

// RetryStatus reports whether an upstream response status warrants a
// retry under the policy's conditions (grpcStatus is -1 when absent).
func (rp *RetryPolicy) RetryStatus(status, grpcStatus int) bool {
	on := rp.On
	switch {
	case on&Retry5xx != 0 && status >= 500:
		return true
	case on&RetryGatewayError != 0 && (status == 502 || status == 503 || status == 504):
		return true
	case on&RetryRetriable4xx != 0 && status == 409:
		return true
	}
	if on&RetryRetriableStatusCodes != 0 {
		for _, c := range rp.StatusCodes {
			if c == status {
				return true
			}
		}
	}
	switch grpcStatus {
	case 1:
		return on&RetryGRPCCancelled != 0
	case 4:
		return on&RetryGRPCDeadlineExceeded != 0
	case 8:
		return on&RetryGRPCResourceExhausted != 0
	case 14:
		return on&RetryGRPCUnavailable != 0
	case 13:
		return on&RetryGRPCInternal != 0
	}
	return false
}

// RetryConnectFailure reports whether a failed connect may be retried.
func (rp *RetryPolicy) RetryConnectFailure() bool {
	return rp.On&(RetryConnectFailure|Retry5xx|RetryGatewayError|RetryReset|RetryResetBeforeRequest) != 0
}

// RetryReset reports whether a reset/disconnect after sending may be
// retried.
func (rp *RetryPolicy) RetryReset() bool {
	return rp.On&(RetryReset|Retry5xx|RetryGatewayError) != 0
}

// RetryTimeout reports whether a per-try timeout may be retried (Envoy
// retries a per-try timeout under 5xx and gateway-error).
func (rp *RetryPolicy) RetryTimeout() bool {
	return rp.On&(Retry5xx|RetryGatewayError) != 0
}

// HashPolicy is one compiled hash policy.
type HashPolicy struct {
	Header   string
	Cookie   string
	Query    string
	SourceIP bool
	Terminal bool
}

func compileHash(h *routev3.RouteAction_HashPolicy, path string) (HashPolicy, error) {
	hp := HashPolicy{Terminal: h.GetTerminal()}
	switch p := h.GetPolicySpecifier().(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		hp.Header = strings.ToLower(p.Header.GetHeaderName())
	case *routev3.RouteAction_HashPolicy_Cookie_:
		hp.Cookie = p.Cookie.GetName()
	case *routev3.RouteAction_HashPolicy_QueryParameter_:
		hp.Query = p.QueryParameter.GetName()
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		hp.SourceIP = p.ConnectionProperties.GetSourceIp()
	default:
		return hp, fmt.Errorf("%s: unsupported hash policy %T", path, p)
	}
	return hp, nil
}
