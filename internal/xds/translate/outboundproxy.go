package translate

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"reflect"
	"sort"

	networking "istio.io/api/networking/v1alpha3"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/config"
)

// OutboundProxy is all that Outbound and Endpoints read of the proxy: they
// translate NewOutboundProxy(in).Proxy() in place of in.Proxy. So proxies
// with equal OutboundProxy values get equal Outbound and Endpoints output
// for the same Config, Registry, Mesh and Credentials, and Key, which
// hashes every field, can key a cache of that output. A Proxy field that
// outbound translation starts to read must be added here, or translation
// reads its zero value.
type OutboundProxy struct {
	Type ProxyType
	// Generator is GeneratorGRPC for proxyless gRPC clients.
	Generator string
	// Namespace is "default" when the proxy names none.
	Namespace string
	// Locality orders endpoints for locality failover.
	Locality string
	// Network is the proxy's network (node metadata NETWORK): endpoints
	// on another network are left out of its EDS.
	Network string
	// Labels are the proxy's labels whose keys are named by a selector that
	// can apply to it: VirtualService sourceLabels; DestinationRule and
	// Sidecar workloadSelectors in its namespace; Gateway selectors for a
	// router. Every such selector matches these as it matches all the
	// proxy's labels, and proxies that differ only in labels no selector
	// names share one OutboundProxy. Nil when no selector names a key the
	// proxy has.
	Labels map[string]string
	// Name and Cluster are read only when the mesh has tracing providers
	// (the spans' istio.canonical_service and istio.cluster_id tags): Name
	// only without a label naming the canonical service, so proxies of one
	// workload still share an OutboundProxy.
	Name, Cluster string
}

// NewOutboundProxy narrows in.Proxy to what outbound translation reads. A
// nil proxy is a sidecar in "default", as for Translate.
func NewOutboundProxy(in Input) OutboundProxy {
	p := in.Proxy
	if p == nil {
		p = &Proxy{Type: SidecarProxy}
	}
	o := OutboundProxy{Type: p.Type, Generator: p.Generator, Namespace: p.Namespace, Locality: p.Locality, Network: p.Network}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	tracing := len(in.Mesh.ExtensionProviders) > 0
	if tracing {
		o.Cluster = p.Cluster
		if canonicalLabel(p.Labels, canonicalServiceLabels) == "" {
			o.Name = p.Name
		}
	}
	if len(p.Labels) == 0 {
		return o
	}
	keep := func(sel map[string]string) {
		for k := range sel {
			if v, ok := p.Labels[k]; ok {
				if o.Labels == nil {
					o.Labels = map[string]string{}
				}
				o.Labels[k] = v
			}
		}
	}
	for _, r := range in.Config.List(config.KindVirtualService) {
		vs, _ := r.Spec.(*networking.VirtualService)
		for _, hr := range vs.GetHttp() {
			for _, m := range hr.GetMatch() {
				keep(m.GetSourceLabels())
			}
		}
		for _, tr := range vs.GetTcp() {
			for _, m := range tr.GetMatch() {
				keep(m.GetSourceLabels())
			}
		}
		for _, tr := range vs.GetTls() {
			for _, m := range tr.GetMatch() {
				keep(m.GetSourceLabels())
			}
		}
	}
	for _, r := range in.Config.List(config.KindDestinationRule) {
		if dr, _ := r.Spec.(*networking.DestinationRule); nsOf(r) == o.Namespace {
			keep(dr.GetWorkloadSelector().GetMatchLabels())
		}
	}
	if o.Type == SidecarProxy {
		for _, r := range in.Config.List(config.KindSidecar) {
			if sc, _ := r.Spec.(*networking.Sidecar); nsOf(r) == o.Namespace {
				keep(sc.GetWorkloadSelector().GetLabels())
			}
		}
	}
	if tracing {
		keepKeys := map[string]string{}
		for _, k := range canonicalServiceLabels {
			keepKeys[k] = ""
		}
		for _, k := range canonicalRevisionLabels {
			keepKeys[k] = ""
		}
		keep(keepKeys)
	}
	for _, r := range in.Config.List(config.KindTelemetry) {
		if t, _ := r.Spec.(*telemetry.Telemetry); nsOf(r) == o.Namespace {
			keep(t.GetSelector().GetMatchLabels())
		}
	}
	if o.Type == RouterProxy {
		for _, r := range in.Config.List(config.KindGateway) {
			gw, _ := r.Spec.(*networking.Gateway)
			keep(gw.GetSelector())
		}
	}
	return o
}

// Proxy is the Proxy that outbound translation reads: o's fields, every
// other field zero.
func (o OutboundProxy) Proxy() *Proxy {
	return &Proxy{Type: o.Type, Generator: o.Generator, Namespace: o.Namespace, Locality: o.Locality, Network: o.Network, Labels: o.Labels, Name: o.Name, Cluster: o.Cluster}
}

// Key is a hash of every field of o in a canonical encoding (fields in
// order, strings length-prefixed, map entries sorted by key): equal
// values, however built, have equal keys, and a field added to
// OutboundProxy is in the key without more code.
func (o OutboundProxy) Key() string {
	h := sha256.New()
	hashValue(h, reflect.ValueOf(o))
	return string(h.Sum(nil)[:16])
}

func hashValue(h hash.Hash, v reflect.Value) {
	var n [binary.MaxVarintLen64]byte
	writeUint := func(u uint64) { h.Write(n[:binary.PutUvarint(n[:], u)]) }
	switch v.Kind() {
	case reflect.String:
		writeUint(uint64(v.Len()))
		h.Write([]byte(v.String()))
	case reflect.Bool:
		if v.Bool() {
			writeUint(1)
		} else {
			writeUint(0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		writeUint(uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		writeUint(v.Uint())
	case reflect.Struct:
		for i := range v.NumField() {
			hashValue(h, v.Field(i))
		}
	case reflect.Slice:
		writeUint(uint64(v.Len()))
		for i := range v.Len() {
			hashValue(h, v.Index(i))
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			panic(fmt.Sprintf("translate: OutboundProxy holds a %s, which Key cannot encode", v.Type()))
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		writeUint(uint64(len(keys)))
		for _, k := range keys {
			hashValue(h, k)
			hashValue(h, v.MapIndex(k))
		}
	default:
		panic(fmt.Sprintf("translate: OutboundProxy holds a %s, which Key cannot encode", v.Type()))
	}
}
