package install

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

type kind int

const (
	kObject kind = iota
	kString
	kBool
	kInt
	kNumber
	kList
	kQuantity
)

// field is one accepted key: its type, and for objects the keys inside.
type field struct {
	kind   kind
	fields map[string]*field
	elem   *field
	enum   []string
	// vet, when set, vets the converted value.
	vet func(v any) error
}

func obj(f map[string]*field) *field { return &field{kind: kObject, fields: f} }
func str() *field                    { return &field{kind: kString} }
func boolean() *field                { return &field{kind: kBool} }
func integer() *field                { return &field{kind: kInt} }
func number() *field                 { return &field{kind: kNumber} }
func quantity() *field               { return &field{kind: kQuantity} }
func list(e *field) *field           { return &field{kind: kList, elem: e} }
func enum(v ...string) *field        { return &field{kind: kString, enum: v} }
func checked(f *field, c func(any) error) *field {
	f.vet = c
	return f
}

func resources() *field {
	q := obj(map[string]*field{"cpu": quantity(), "memory": quantity()})
	return obj(map[string]*field{"requests": q, "limits": q})
}

func gatewayField(kind string) *field {
	name := str()
	if kind == "egress" {
		name = checked(str(), notEastWest)
	}
	return obj(map[string]*field{"name": name, "enabled": boolean(), "namespace": str()})
}

// EastWestGatewayName is Istio's east-west gateway: listed under
// components.ingressGateways it is installed as the network's gateway
// (see eastWestGateway in render.go).
const EastWestGatewayName = "istio-eastwestgateway"

// notEastWest refuses the east-west gateway's name among egress gateways.
func notEastWest(v any) error {
	if v.(string) == EastWestGatewayName {
		return fmt.Errorf("an east-west gateway receives other networks' traffic: list it under components.ingressGateways")
	}
	return nil
}

func gatewayValues() *field {
	return obj(map[string]*field{
		"type":         enum("LoadBalancer", "NodePort", "ClusterIP"),
		"replicaCount": integer(),
	})
}

// specSchema lists every key Trellis accepts under an IstioOperator spec.
// Istio keys Trellis does not implement are absent, so setting them is an
// error naming the path rather than a silent no-op.
var specSchema = obj(map[string]*field{
	"profile": str(),
	"hub":     str(),
	"tag":     str(),
	"components": obj(map[string]*field{
		"base":            obj(map[string]*field{"enabled": boolean()}),
		"pilot":           obj(map[string]*field{"enabled": boolean()}),
		"ingressGateways": list(gatewayField("ingress")),
		"egressGateways":  list(gatewayField("egress")),
		"cni": obj(map[string]*field{"enabled": checked(boolean(), func(v any) error {
			if v == true {
				return fmt.Errorf("Trellis has no CNI plugin: the injected init container (trellis-proxy iptables) sets up interception; remove the setting")
			}
			return nil
		})}),
	}),
	"meshConfig": obj(map[string]*field{
		"accessLogFile":         str(),
		"accessLogEncoding":     enum("TEXT", "JSON"),
		"enableTracing":         boolean(),
		"rootNamespace":         str(),
		"outboundTrafficPolicy": obj(map[string]*field{"mode": enum("ALLOW_ANY", "REGISTRY_ONLY")}),
		"defaultConfig": obj(map[string]*field{
			"concurrency":                     integer(),
			"holdApplicationUntilProxyStarts": boolean(),
			"terminationDrainDuration":        checked(str(), protoDuration),
		}),
	}),
	"values": obj(map[string]*field{
		"global": obj(map[string]*field{
			"hub":                str(),
			"tag":                str(),
			"istioNamespace":     checked(str(), dnsLabel),
			"imagePullPolicy":    enum("Always", "IfNotPresent", "Never"),
			"logLevel":           enum("debug", "info", "warn", "error"),
			"mtls":               obj(map[string]*field{"enabled": boolean()}),
			"enableTracing":      boolean(),
			"meshExpansion":      obj(map[string]*field{"enabled": boolean()}),
			"remotePilotAddress": str(),
			"multiCluster": obj(map[string]*field{
				"clusterName": checked(str(), clusterName),
				"enabled":     boolean(),
			}),
			"network": checked(str(), labelValue),
			"meshID":  checked(str(), labelValue),
			"proxy": obj(map[string]*field{
				"includeIPRanges":      checked(str(), cidrList),
				"excludeIPRanges":      checked(str(), cidrList),
				"includeInboundPorts":  checked(str(), portList),
				"excludeInboundPorts":  checked(str(), portList),
				"excludeOutboundPorts": checked(str(), portList),
				"accessLogFile":        str(),
				"concurrency":          integer(),
				"autoInject":           enum("enabled", "disabled"),
				"privileged":           boolean(),
				"logLevel":             enum("trace", "debug", "info", "warning", "error", "critical", "off"),
				"resources":            resources(),
			}),
		}),
		"istiodRemote": obj(map[string]*field{
			"injectionURL":  checked(str(), httpsURL),
			"injectionPath": checked(str(), absPath),
		}),
		"sidecarInjectorWebhook": obj(map[string]*field{
			"enableNamespacesByDefault": boolean(),
			"rewriteAppHTTPProbe":       boolean(),
		}),
		"pilot": obj(map[string]*field{
			"env": obj(map[string]*field{
				"ENABLE_NATIVE_SIDECARS": enum("auto", "true", "false"),
			}),
			"replicaCount":  integer(),
			"traceSampling": number(),
			"resources":     resources(),
		}),
		"gateways": obj(map[string]*field{
			"istio-ingressgateway": gatewayValues(),
			"istio-egressgateway":  gatewayValues(),
		}),
	}),
})

// check converts raw (--set strings, YAML scalars) to the schema's types
// and reports every problem with its path.
func (f *field) check(path string, v any) (any, []error) {
	at := func(format string, a ...any) []error {
		p := path
		if p == "" {
			p = "spec"
		}
		return []error{fmt.Errorf("%s: %s", p, fmt.Sprintf(format, a...))}
	}
	if v == nil {
		return nil, nil
	}
	var out any
	switch f.kind {
	case kObject:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, at("must be a mapping, got %v", v)
		}
		res := make(map[string]any, len(m))
		var errs []error
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			child := join(path, k)
			sub, ok := f.fields[k]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown setting; accepted here: %s", child, strings.Join(sortedKeys(f.fields), ", ")))
				continue
			}
			cv, e := sub.check(child, m[k])
			errs = append(errs, e...)
			if cv != nil {
				res[k] = cv
			}
		}
		return res, errs
	case kList:
		l, ok := v.([]any)
		if !ok {
			return nil, at("must be a list")
		}
		res := make([]any, 0, len(l))
		var errs []error
		for i, e := range l {
			cv, es := f.elem.check(fmt.Sprintf("%s[%d]", path, i), e)
			errs = append(errs, es...)
			res = append(res, cv)
		}
		return res, errs
	case kString:
		switch t := v.(type) {
		case string:
			out = t
		case bool, float64, int, int64:
			out = fmt.Sprint(t)
		default:
			return nil, at("must be a string")
		}
		if len(f.enum) > 0 && !contains(f.enum, out.(string)) {
			return nil, at("got %q, want one of %s", out, strings.Join(f.enum, ", "))
		}
	case kBool:
		switch t := v.(type) {
		case bool:
			out = t
		case string:
			b, err := strconv.ParseBool(t)
			if err != nil {
				return nil, at("got %q, want true or false", t)
			}
			out = b
		default:
			return nil, at("got %v, want true or false", v)
		}
	case kInt:
		switch t := v.(type) {
		case float64:
			if t != float64(int64(t)) {
				return nil, at("got %v, want a whole number", t)
			}
			out = int64(t)
		case int:
			out = int64(t)
		case int64:
			out = t
		case string:
			n, err := strconv.ParseInt(t, 10, 64)
			if err != nil {
				return nil, at("got %q, want a whole number", t)
			}
			out = n
		default:
			return nil, at("got %v, want a whole number", v)
		}
		if out.(int64) < 0 {
			return nil, at("got %d, must not be negative", out)
		}
	case kNumber:
		switch t := v.(type) {
		case float64:
			out = t
		case int:
			out = float64(t)
		case int64:
			out = float64(t)
		case string:
			n, err := strconv.ParseFloat(t, 64)
			if err != nil {
				return nil, at("got %q, want a number", t)
			}
			out = n
		default:
			return nil, at("got %v, want a number", v)
		}
	case kQuantity:
		s := fmt.Sprint(v)
		if _, err := resource.ParseQuantity(s); err != nil {
			return nil, at("got %q, want a Kubernetes quantity such as 100m or 128Mi", s)
		}
		out = s
	}
	if f.vet != nil {
		if err := f.vet(out); err != nil {
			return nil, at("%v", err)
		}
	}
	return out, nil
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func sortedKeys(m map[string]*field) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// clusterName accepts what may name a cluster: a Secret data key and a
// Secret name suffix (istio-remote-secret-NAME), so a DNS-1123 label.
func clusterName(v any) error {
	if v.(string) == "" {
		return nil
	}
	return dnsLabel(v)
}

// labelValue accepts a Kubernetes label value (network and mesh names go
// into topology.istio.io/network and proxy metadata).
func labelValue(v any) error {
	s := v.(string)
	if len(s) > 63 {
		return fmt.Errorf("got %q, want at most 63 characters (a label value)", s)
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (c == '-' || c == '_' || c == '.') && i > 0 && i < len(s)-1
		if !ok {
			return fmt.Errorf("got %q, want letters, digits and '-', '_', '.' inside (a label value)", s)
		}
	}
	return nil
}

func dnsLabel(v any) error {
	s := v.(string)
	if s == "" || len(s) > 63 {
		return fmt.Errorf("got %q, want a namespace name (1-63 characters)", s)
	}
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(s)-1) {
			return fmt.Errorf("got %q, want lower-case letters, digits and '-'", s)
		}
	}
	return nil
}

// cidrList accepts "", "*" or comma-separated CIDRs, as the
// traffic.sidecar.istio.io/*IPRanges annotations do.
func cidrList(v any) error {
	s := strings.TrimSpace(v.(string))
	if s == "" || s == "*" {
		return nil
	}
	for _, p := range strings.Split(s, ",") {
		if _, err := netip.ParsePrefix(strings.TrimSpace(p)); err != nil {
			return fmt.Errorf("%q is not a CIDR (want e.g. 10.0.0.0/8, comma separated, or *)", strings.TrimSpace(p))
		}
	}
	return nil
}

// protoDuration accepts a protobuf JSON duration ("5s", "0.5s"), as
// Istio's MeshConfig durations are written.
func protoDuration(v any) error {
	s := v.(string)
	n, err := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64)
	_, goErr := time.ParseDuration(s)
	if !strings.HasSuffix(s, "s") || err != nil || goErr != nil || n < 0 {
		return fmt.Errorf("got %q, want seconds with an s suffix, e.g. 5s or 0.5s", s)
	}
	return nil
}

// portList accepts "", "*" or comma-separated ports.
func portList(v any) error {
	s := strings.TrimSpace(v.(string))
	if s == "" || s == "*" {
		return nil
	}
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q is not a port (want 1-65535, comma separated, or *)", strings.TrimSpace(p))
		}
	}
	return nil
}

// Settings are the checked install settings.
type Settings struct {
	Profile    string     `json:"profile"`
	Hub        string     `json:"hub,omitempty"`
	Tag        string     `json:"tag,omitempty"`
	Components Components `json:"components"`
	MeshConfig MeshConfig `json:"meshConfig"`
	Values     Values     `json:"values"`
}

// Components says which parts are installed.
type Components struct {
	Base            Enabled   `json:"base"`
	Pilot           Enabled   `json:"pilot"`
	IngressGateways []Gateway `json:"ingressGateways"`
	EgressGateways  []Gateway `json:"egressGateways"`
}

type Enabled struct {
	Enabled bool `json:"enabled"`
}

// Gateway is one gateway component. Namespace empty means the install
// namespace.
type Gateway struct {
	Name      string `json:"name"`
	Enabled   bool   `json:"enabled"`
	Namespace string `json:"namespace,omitempty"`
}

// MeshConfig is the subset of Istio's MeshConfig Trellis honours.
type MeshConfig struct {
	AccessLogFile         string `json:"accessLogFile"`
	AccessLogEncoding     string `json:"accessLogEncoding"`
	EnableTracing         bool   `json:"enableTracing"`
	RootNamespace         string `json:"rootNamespace"`
	OutboundTrafficPolicy struct {
		Mode string `json:"mode"`
	} `json:"outboundTrafficPolicy"`
	DefaultConfig struct {
		Concurrency                     int64  `json:"concurrency"`
		HoldApplicationUntilProxyStarts bool   `json:"holdApplicationUntilProxyStarts"`
		TerminationDrainDuration        string `json:"terminationDrainDuration"`
	} `json:"defaultConfig"`
}

type Values struct {
	Global                 Global                 `json:"global"`
	SidecarInjectorWebhook SidecarInjectorWebhook `json:"sidecarInjectorWebhook"`
	// IstiodRemote is where a remote cluster's injection webhook calls the
	// primary's trellisd (remote profile).
	IstiodRemote IstiodRemote `json:"istiodRemote"`
	Pilot        struct {
		Env struct {
			// EnableNativeSidecars is auto, true or false (inject.Config.NativeSidecars).
			EnableNativeSidecars string `json:"ENABLE_NATIVE_SIDECARS"`
		} `json:"env"`
		ReplicaCount  int64     `json:"replicaCount"`
		TraceSampling float64   `json:"traceSampling"`
		Resources     Resources `json:"resources"`
	} `json:"pilot"`
	Gateways map[string]GatewayValues `json:"gateways"`
}

type Global struct {
	Hub                string  `json:"hub"`
	Tag                string  `json:"tag"`
	IstioNamespace     string  `json:"istioNamespace"`
	ImagePullPolicy    string  `json:"imagePullPolicy"`
	LogLevel           string  `json:"logLevel"`
	MTLS               Enabled `json:"mtls"`
	EnableTracing      bool    `json:"enableTracing"`
	MeshExpansion      Enabled `json:"meshExpansion"`
	RemotePilotAddress string  `json:"remotePilotAddress"`
	// MultiCluster names this cluster on its endpoints, its proxies'
	// CLUSTER_ID and remote secrets; empty means "Kubernetes".
	MultiCluster MultiCluster `json:"multiCluster"`
	// Network is this cluster's network (the system namespace's
	// topology.istio.io/network label, the proxies' NETWORK); empty means
	// the default network.
	Network string `json:"network"`
	// MeshID is the proxies' MESH_ID; empty means "cluster.local".
	MeshID string `json:"meshID"`
	Proxy  Proxy  `json:"proxy"`
}

// MultiCluster is values.global.multiCluster.
type MultiCluster struct {
	ClusterName string `json:"clusterName"`
	Enabled     bool   `json:"enabled"`
}

// Proxy holds the sidecar defaults (pod annotations override them).
type Proxy struct {
	IncludeIPRanges      string    `json:"includeIPRanges"`
	ExcludeIPRanges      string    `json:"excludeIPRanges"`
	IncludeInboundPorts  string    `json:"includeInboundPorts"`
	ExcludeInboundPorts  string    `json:"excludeInboundPorts"`
	ExcludeOutboundPorts string    `json:"excludeOutboundPorts"`
	AccessLogFile        string    `json:"accessLogFile"`
	Concurrency          int64     `json:"concurrency"`
	AutoInject           string    `json:"autoInject"`
	Privileged           bool      `json:"privileged"`
	LogLevel             string    `json:"logLevel"`
	Resources            Resources `json:"resources"`
}

type SidecarInjectorWebhook struct {
	EnableNamespacesByDefault bool `json:"enableNamespacesByDefault"`
	RewriteAppHTTPProbe       bool `json:"rewriteAppHTTPProbe"`
}

type Resources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

type GatewayValues struct {
	Type         string `json:"type"`
	ReplicaCount int64  `json:"replicaCount"`
}

func decodeSettings(tree map[string]any) (*Settings, error) {
	b, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("encode settings: %w", err)
	}
	s := &Settings{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("decode settings: %w", err)
	}
	if s.Hub != "" {
		s.Values.Global.Hub = s.Hub
	}
	if s.Tag != "" {
		s.Values.Global.Tag = s.Tag
	}
	return s, nil
}

// IstiodRemote is values.istiodRemote: the remote profile's injection
// webhook URL (empty: https://REMOTE_PILOT_HOST:15017) and path (empty:
// /inject/cluster/CLUSTER/net/NETWORK).
type IstiodRemote struct {
	InjectionURL  string `json:"injectionURL"`
	InjectionPath string `json:"injectionPath"`
}

func httpsURL(v any) error {
	s, _ := v.(string)
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: want https://HOST[:PORT][/PATH], the primary trellisd's webhook (the API server calls webhooks over HTTPS only)", s)
	}
	return nil
}

func absPath(v any) error {
	s, _ := v.(string)
	if s != "" && !strings.HasPrefix(s, "/") {
		return fmt.Errorf("%q: want a path starting with / (e.g. /inject/cluster/cluster2/net/network1)", s)
	}
	return nil
}
