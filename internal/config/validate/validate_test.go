package validate

import (
	"errors"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/config"
)

// check runs the whole YAML-to-verdict path: parse, then validate each
// resource that parsed.
func check(t *testing.T, yaml string) Result {
	t.Helper()
	pr, err := config.Parse([]byte(yaml), "in.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var res Result
	for _, e := range pr.Errors {
		var is *config.Issue
		if !errors.As(e, &is) {
			t.Fatalf("parse error %v is a %T, want *config.Issue", e, e)
		}
		res.Errors = append(res.Errors, *is)
	}
	for _, r := range pr.Rejected {
		res.Errors = append(res.Errors, Resource(r).Errors...)
	}
	res.Merge(Resources(pr.Resources))
	return res
}

func vs(spec string) string {
	return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\n  namespace: ns\nspec:\n" + indent(spec)
}

func dr(spec string) string {
	return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\n  namespace: ns\nspec:\n" + indent(spec)
}

func obj(apiVersion, kind, spec string) string {
	return "apiVersion: " + apiVersion + "\nkind: " + kind + "\nmetadata:\n  name: r\n  namespace: ns\nspec:\n" + indent(spec)
}

func indent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

const route2 = `hosts: [bill-service]
http:
- route:
  - destination: {host: bill-service, subset: v1}
    weight: 90
  - destination: {host: bill-service, subset: v2}
    weight: %s
`

func TestInvalidInputs(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		field string // want an error at exactly this path
		msg   string // and containing this text
	}{
		{"weight above 100", vs(strings.Replace(route2, "%s", "110", 1)), "spec.http[0].route[1].weight", "must be between 0 and 100"},
		{"negative weight", vs(strings.Replace(route2, "%s", "-10", 1)), "spec.http[0].route[1].weight", "must be between 0 and 100"},
		{"weight not a number", vs(strings.Replace(route2, "%s", "ten", 1)), "spec.http[0].route[1].weight", "not an integer"},
		{"missing destination host", vs("hosts: [a]\nhttp:\n- route:\n  - destination: {subset: v1}\n"), "spec.http[0].route[0].destination.host", "missing"},
		{"missing destination", vs("hosts: [a]\nhttp:\n- route:\n  - weight: 100\n"), "spec.http[0].route[0].destination", "missing"},
		{"missing DestinationRule host", dr("subsets:\n- name: v1\n  labels: {version: v1}\n"), "spec.host", "missing"},
		{"bad uri regex", vs("hosts: [a]\nhttp:\n- match:\n  - uri: {regex: \"/api/(v1\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].uri.regex", "invalid RE2"},
		{"perl-only regex", vs("hosts: [a]\nhttp:\n- match:\n  - uri: {regex: \"/(?=x)\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].uri.regex", "invalid RE2"},
		{"bad header regex", vs("hosts: [a]\nhttp:\n- match:\n  - headers:\n      user: {regex: \"[a-\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].headers[user].regex", "invalid RE2"},
		{"bad query regex", vs("hosts: [a]\nhttp:\n- match:\n  - queryParams:\n      q: {regex: \"*x\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].queryParams[q].regex", "invalid RE2"},
		{"duplicate subset", dr("host: a\nsubsets:\n- name: v1\n- name: v1\n"), "spec.subsets[1].name", "duplicate subset name \"v1\""},
		{"subset name not DNS-1123", dr("host: a\nsubsets:\n- name: V_1\n"), "spec.subsets[0].name", "invalid subset name"},
		{"unknown field in route", vs("hosts: [a]\nhttp:\n- rout:\n  - destination: {host: a}\n"), "spec.http[0].rout", "unknown field"},
		{"unknown nested field", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    simpel: RANDOM\n"), "spec.trafficPolicy.loadBalancer.simpel", "unknown field"},
		{"unknown top-level field", vs("hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n") + "extra: 1\n", "extra", "unknown field"},
		{"wrong kind", obj("networking.istio.io/v1", "VirtualServce", "hosts: [a]"), "kind", "accepted kinds: DestinationRule, Gateway, ServiceEntry, Sidecar, VirtualService, WorkloadEntry, WorkloadGroup"},
		{"wrong version", obj("networking.istio.io/v2", "VirtualService", "hosts: [a]"), "apiVersion", "accepted: networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3"},
		{"security version of a networking kind", obj("security.istio.io/v1", "VirtualService", "hosts: [a]"), "apiVersion", "not a version of VirtualService"},
		{"networking group for a security kind", obj("networking.istio.io/v1", "PeerAuthentication", "mtls: {mode: STRICT}"), "apiVersion", "accepted: security.istio.io/v1, security.istio.io/v1beta1"},
		{"v1alpha3 is not a security version", obj("security.istio.io/v1alpha3", "AuthorizationPolicy", "action: DENY"), "apiVersion", "accepted: security.istio.io/v1"},
		{"missing kind", "apiVersion: networking.istio.io/v1\nmetadata: {name: x}\n", "kind", "missing"},
		{"missing name", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {hosts: [a]}\n", "metadata.name", "missing"},
		{"invalid name", strings.Replace(vs("hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n"), "name: r", "name: Bad_Name", 1), "metadata.name", "not a valid name"},
		{"broken YAML", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: x\n spec: [\n", "", "invalid YAML"},
		{"duplicate YAML key", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nkind: Gateway\nmetadata: {name: x}\n", "", "invalid YAML"},
		{"spec not an object", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: [a]\n", "spec", "want an object"},
		{"bad enum", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    simple: FASTEST\n"), "spec.trafficPolicy.loadBalancer.simple", "want one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST"},
		{"string for a port", vs("hosts: [a]\nhttp:\n- route:\n  - destination:\n      host: a\n      port: {number: eighty}\n"), "spec.http[0].route[0].destination.port.number", "not a non-negative integer"},
		{"port out of range", vs("hosts: [a]\nhttp:\n- route:\n  - destination:\n      host: a\n      port: {number: 70000}\n"), "spec.http[0].route[0].destination.port.number", "want 1-65535"},
		{"list where object expected", vs("hosts: [a]\nhttp:\n- route:\n  - destination: [a]\n"), "spec.http[0].route[0].destination", "want an object"},
		{"duration without unit", vs("hosts: [a]\nhttp:\n- timeout: \"5\"\n  route:\n  - destination: {host: a}\n"), "spec.http[0].timeout", "not a duration"},
		{"duration below 1ms", vs("hosts: [a]\nhttp:\n- timeout: 0.0001s\n  route:\n  - destination: {host: a}\n"), "spec.http[0].timeout", "at least 1ms"},
		{"fault percentage above 100", vs("hosts: [a]\nhttp:\n- fault:\n    abort:\n      percentage: {value: 150}\n      httpStatus: 500\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.abort.percentage.value", "between 0 and 100"},
		{"abort status out of range", vs("hosts: [a]\nhttp:\n- fault:\n    abort:\n      httpStatus: 700\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.abort.httpStatus", "between 200 and 599"},
		{"abort with an unknown gRPC status", vs("hosts: [a]\nhttp:\n- fault:\n    abort:\n      grpcStatus: NOPE\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.abort.grpcStatus", "is not a gRPC status"},
		{"abort without status", vs("hosts: [a]\nhttp:\n- fault:\n    abort:\n      percentage: {value: 5}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.abort.httpStatus", "missing"},
		{"delay without fixedDelay", vs("hosts: [a]\nhttp:\n- fault:\n    delay:\n      percentage: {value: 5}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.delay.fixedDelay", "missing"},
		{"mirror percentage above 100", vs("hosts: [a]\nhttp:\n- mirror: {host: b}\n  mirrorPercentage: {value: 101}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].mirrorPercentage.value", "between 0 and 100"},
		{"AUTO_PASSTHROUGH on an HTTPS server", obj("networking.istio.io/v1", "Gateway", "selector: {istio: eastwestgateway}\nservers:\n- port: {number: 15443, name: tls, protocol: HTTPS}\n  hosts: [\"*.local\"]\n  tls: {mode: AUTO_PASSTHROUGH}"), "spec.servers[0].tls.mode", "AUTO_PASSTHROUGH needs protocol TLS, not HTTPS"},
		{"route and redirect", vs("hosts: [a]\nhttp:\n- redirect: {uri: /x}\n  route:\n  - destination: {host: a}\n"), "spec.http[0]", "exclusive"},
		{"rewrite with redirect", vs("hosts: [a]\nhttp:\n- redirect: {uri: /x}\n  rewrite: {uri: /y}\n"), "spec.http[0].rewrite", "cannot be used together with redirect"},
		{"empty redirect", vs("hosts: [a]\nhttp:\n- redirect: {redirectCode: 301}\n"), "spec.http[0].redirect", "needs at least one of"},
		{"bad redirect code", vs("hosts: [a]\nhttp:\n- redirect: {uri: /x, redirectCode: 200}\n"), "spec.http[0].redirect.redirectCode", "not a redirect code"},
		{"no action", vs("hosts: [a]\nhttp:\n- match:\n  - uri: {prefix: /}\n"), "spec.http[0]", "needs one of route, redirect"},
		{"two string match kinds", vs("hosts: [a]\nhttp:\n- match:\n  - uri: {exact: /a, prefix: /b}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].uri.prefix", "cannot be set together with exact"},
		{"no routes at all", vs("hosts: [a]\n"), "spec", "no routes"},
		{"tcp without hosts", vs("tcp:\n- route:\n  - destination: {host: a}\n"), "spec.hosts", "missing"},
		{"invalid host", vs("hosts: [bad_host!]\nhttp:\n- route:\n  - destination: {host: a}\n"), "spec.hosts[0]", "invalid host"},
		{"wildcard in the middle", vs("hosts: [\"a.*.com\"]\nhttp:\n- route:\n  - destination: {host: a}\n"), "spec.hosts[0]", "invalid host"},
		{"star host bound to mesh", vs("hosts: [\"*\"]\nhttp:\n- route:\n  - destination: {host: a}\n"), "spec.hosts[0]", "not allowed for a VirtualService bound to the mesh"},
		{"wildcard destination", vs("hosts: [a]\nhttp:\n- route:\n  - destination: {host: \"*.a.com\"}\n"), "spec.http[0].route[0].destination.host", "not allowed here"},
		{"bad gateway name", vs("gateways: [\"Bad/gw\"]\nhosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n"), "spec.gateways[0]", "invalid gateway"},
		{"negative retries", vs("hosts: [a]\nhttp:\n- retries: {attempts: -1}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].retries.attempts", "zero or more"},
		{"unknown retryOn", vs("hosts: [a]\nhttp:\n- retries: {attempts: 2, retryOn: \"5xx,sometimes\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].retries.retryOn", "\"sometimes\" is not a retry condition"},
		{"tls sni outside hosts", vs("hosts: [a.com]\ntls:\n- match:\n  - sniHosts: [b.com]\n  route:\n  - destination: {host: b}\n"), "spec.tls[0].match[0].sniHosts[0]", "not covered"},
		{"bad tcp subnet", vs("hosts: [a]\ntcp:\n- match:\n  - destinationSubnets: [10.0.0.0/99]\n  route:\n  - destination: {host: a}\n"), "spec.tcp[0].match[0].destinationSubnets[0]", "not a valid CIDR"},
		{"maglev table not prime", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      useSourceIp: true\n      maglev: {tableSize: 1000}\n"), "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "not a prime"},
		{"cookie hash without name", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      httpCookie: {ttl: 10s}\n"), "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name", "missing"},
		{"outlier ejection percent", dr("host: a\ntrafficPolicy:\n  outlierDetection:\n    maxEjectionPercent: 150\n"), "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "between 0 and 100"},
		{"negative max connections", dr("host: a\ntrafficPolicy:\n  connectionPool:\n    tcp: {maxConnections: -1}\n"), "spec.trafficPolicy.connectionPool.tcp.maxConnections", "zero (unset) or more"},
		{"istio mutual with cert", dr("host: a\ntrafficPolicy:\n  tls: {mode: ISTIO_MUTUAL, clientCertificate: /c.pem}\n"), "spec.trafficPolicy.tls", "uses the mesh's certificates"},
		{"mutual without cert", dr("host: a\ntrafficPolicy:\n  tls: {mode: MUTUAL}\n"), "spec.trafficPolicy.tls.clientCertificate", "missing"},
		{"duplicate port-level port", dr("host: a\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}\n  - port: {number: 80}\n"), "spec.trafficPolicy.portLevelSettings[1].port.number", "already has settings"},
		{"subset label value", dr("host: a\nsubsets:\n- name: v1\n  labels: {version: \"not valid!\"}\n"), "spec.subsets[0].labels[version]", "invalid label value"},
		{"locality distribute sum", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute:\n      - from: us/a/*\n        to: {\"us/a/*\": 60, \"us/b/*\": 30}\n"), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "add up to 90"},
		{"gateway without servers", obj("networking.istio.io/v1", "Gateway", "selector: {istio: ingressgateway}"), "spec.servers", "missing"},
		{"https without tls", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [\"*\"]"), "spec.servers[0].tls", "needs tls settings"},
		{"simple tls without cert", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [\"*\"]\n  tls: {mode: SIMPLE}"), "spec.servers[0].tls", "needs a certificate"},
		{"gateway host with two slashes", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"a/b/c\"]"), "spec.servers[0].hosts[0]", "more than one '/'"},
		{"gateway unknown protocol", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP3000}\n  hosts: [\"*\"]"), "spec.servers[0].port.protocol", "unsupported protocol"},
		{"gateway duplicate port name", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"*\"]\n- port: {number: 81, name: http, protocol: HTTP}\n  hosts: [\"*\"]"), "spec.servers[1].port.name", "must be unique"},
		{"gateway without hosts", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP}"), "spec.servers[0].hosts", "missing"},
		{"service entry without hosts", obj("networking.istio.io/v1", "ServiceEntry", "ports: [{number: 80, name: http, protocol: HTTP}]"), "spec.hosts", "missing"},
		{"service entry duplicate port", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: http}, {number: 80, name: http2}]"), "spec.ports[1].number", "already declared"},
		{"cidr address with dns", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\naddresses: [10.0.0.0/24]\nports: [{number: 80, name: http}]\nresolution: DNS"), "spec.addresses", "needs resolution NONE or STATIC"},
		{"static with host name endpoint", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [db.example.com]\nports: [{number: 3306, name: tcp, protocol: TCP}]\nresolution: STATIC\nendpoints:\n- address: db1.example.com"), "spec.endpoints[0].address", "resolution STATIC needs IP"},
		{"selector and endpoints", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\nworkloadSelector: {labels: {app: a}}\nendpoints:\n- address: 10.0.0.1"), "spec.workloadSelector", "exclusive"},
		{"dns wildcard without endpoints", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [\"*.example.com\"]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS"), "spec.hosts[0]", "cannot be resolved by DNS"},
		{"none with endpoints", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: NONE\nendpoints:\n- address: 10.0.0.1"), "spec.endpoints", "takes no endpoints"},
		{"endpoint port name unknown", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\nendpoints:\n- address: 10.0.0.1\n  ports: {grpc: 9000}"), "spec.endpoints[0].ports[grpc]", "not one of the ServiceEntry's port names"},
		{"service entry bad resolution", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: MAGIC"), "spec.resolution", "want one of NONE, STATIC, DNS"},
		{"workload entry without address", obj("networking.istio.io/v1", "WorkloadEntry", "labels: {app: a}"), "spec.address", "missing"},
		{"workload entry bad port", obj("networking.istio.io/v1", "WorkloadEntry", "address: 10.0.0.1\nports: {http: 0}"), "spec.ports[http]", "want 1-65535"},
		{"workload group with address", obj("networking.istio.io/v1", "WorkloadGroup", "template: {address: 10.0.0.1}"), "spec.template.address", "not allowed in a template"},
		{"workload group probe empty", obj("networking.istio.io/v1", "WorkloadGroup", "template: {labels: {app: a}}\nprobe: {periodSeconds: 5}"), "spec.probe", "needs one of httpGet"},
		{"sidecar host without namespace", obj("networking.istio.io/v1", "Sidecar", "egress:\n- hosts: [reviews.default.svc.cluster.local]"), "spec.egress[0].hosts[0]", "must have the form namespace/host"},
		{"sidecar empty", obj("networking.istio.io/v1", "Sidecar", "{}"), "spec", "empty Sidecar"},
		{"sidecar two catch-all egress", obj("networking.istio.io/v1", "Sidecar", "egress:\n- hosts: [\"./*\"]\n- hosts: [\"istio-system/*\"]"), "spec.egress[1]", "only one egress listener may omit the port"},
		{"sidecar bad default endpoint", obj("networking.istio.io/v1", "Sidecar", "ingress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  defaultEndpoint: localhost"), "spec.ingress[0].defaultEndpoint", "must be IP:PORT"},
		{"peer authentication bad mode", obj("security.istio.io/v1", "PeerAuthentication", "mtls: {mode: SOMETIMES}"), "spec.mtls.mode", "want one of UNSET, DISABLE, PERMISSIVE, STRICT"},
		{"port-level mtls without selector", obj("security.istio.io/v1", "PeerAuthentication", "portLevelMtls:\n  8080: {mode: DISABLE}"), "spec.portLevelMtls", "needs a selector"},
		{"telemetry two tracing providers", obj("telemetry.istio.io/v1", "Telemetry", "tracing:\n- providers: [{name: a}, {name: b}]"), "spec.tracing[0].providers", "only one tracing provider"},
		{"telemetry sampling over 100", obj("telemetry.istio.io/v1", "Telemetry", "tracing:\n- randomSamplingPercentage: 120"), "spec.tracing[0].randomSamplingPercentage", "between 0 and 100"},
		{"telemetry formatter tag", obj("telemetry.istio.io/v1", "Telemetry", "tracing:\n- customTags:\n    t: {formatter: {value: \"%REQ(x)%\"}}"), "spec.tracing[0].customTags[t].formatter", "not supported"},
		{"telemetry overlapping modes", obj("telemetry.istio.io/v1alpha1", "Telemetry", "tracing:\n- randomSamplingPercentage: 10\n- match: {mode: CLIENT}\n  randomSamplingPercentage: 5"), "spec.tracing[1].match.mode", "overlaps"},
		{"telemetry metrics unknown metric", obj("telemetry.istio.io/v1", "Telemetry", "metrics:\n- overrides:\n  - match: {metric: REQUEST_COUNTS}\n    disabled: true"), "spec.metrics[0].overrides[0].match.metric", "REQUEST_COUNTS"},
		{"telemetry metrics unknown custom metric", obj("telemetry.istio.io/v1", "Telemetry", "metrics:\n- overrides:\n  - match: {customMetric: my_metric}\n    disabled: true"), "spec.metrics[0].overrides[0].match.customMetric", "custom metric definitions are not supported"},
		{"telemetry metrics bad expression", obj("telemetry.istio.io/v1", "Telemetry", "metrics:\n- overrides:\n  - tagOverrides:\n      team: {value: \"xds.cluster_name\"}"), "spec.metrics[0].overrides[0].tagOverrides[team].value", "xds.cluster_name is not supported; supported: a string literal"},
		{"telemetry metrics upsert without value", obj("telemetry.istio.io/v1alpha1", "Telemetry", "metrics:\n- overrides:\n  - tagOverrides:\n      team: {operation: UPSERT}"), "spec.metrics[0].overrides[0].tagOverrides[team].value", "UPSERT needs a value"},
		{"telemetry metrics bad tag name", obj("telemetry.istio.io/v1", "Telemetry", "metrics:\n- overrides:\n  - tagOverrides:\n      x-team: {value: \"'a'\"}"), "spec.metrics[0].overrides[0].tagOverrides[x-team]", "not a Prometheus label name"},
		{"telemetry metrics unsupported provider", obj("telemetry.istio.io/v1", "Telemetry", "metrics:\n- providers: [{name: stackdriver}]"), "spec.metrics[0].providers[0].name", "only to \"prometheus\""},
		{"telemetry metrics reporting interval", obj("telemetry.istio.io/v1", "Telemetry", "metrics:\n- reportingInterval: 5s"), "spec.metrics[0].reportingInterval", "not supported"},
		{"telemetry access log filter on headers", obj("telemetry.istio.io/v1", "Telemetry", "accessLogging:\n- filter: {expression: \"request.headers['x'] == 'y'\"}"), "spec.accessLogging[0].filter.expression", "unsupported character"},
		{"telemetry access log filter on path", obj("telemetry.istio.io/v1", "Telemetry", "accessLogging:\n- filter: {expression: \"request.path == '/x'\"}"), "spec.accessLogging[0].filter.expression", "is not supported"},
		{"telemetry context propagation off", obj("telemetry.istio.io/v1", "Telemetry", "tracing:\n- disableContextPropagation: true"), "spec.tracing[0].disableContextPropagation", "not supported"},
		{"custom action without provider", obj("security.istio.io/v1", "AuthorizationPolicy", "action: CUSTOM\nrules:\n- to:\n  - operation: {paths: [/admin]}"), "spec.provider.name", "missing"},
		{"unknown action", obj("security.istio.io/v1", "AuthorizationPolicy", "action: MAYBE"), "spec.action", "want one of ALLOW, DENY, AUDIT, CUSTOM"},
		{"unknown condition key", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- when:\n  - key: request.color\n    values: [red]"), "spec.rules[0].when[0].key", "unknown attribute"},
		{"empty source", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- from:\n  - source: {}"), "spec.rules[0].from[0].source", "empty source"},
		{"bad ip block", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- from:\n  - source: {ipBlocks: [300.1.1.1]}"), "spec.rules[0].from[0].source.ipBlocks[0]", "not a valid IP"},
		{"bad operation port", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- to:\n  - operation: {ports: [http]}"), "spec.rules[0].to[0].operation.ports[0]", "not a port number"},
		{"jwt rule without issuer or jwksUri", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- audiences: [app]"), "spec.jwtRules[0].issuer", "missing"},
		{"jwt bad jwks uri", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  jwksUri: not-a-url"), "spec.jwtRules[0].jwksUri", "not an http(s) URL"},
		// VirtualService: hosts, matches, route actions, headers, retries, faults, CORS, exportTo.
		{"overlapping hosts", vs("hosts: [\"*.example.com\", a.example.com]\nhttp:\n- route:\n  - destination: {host: a}\n"), "spec.hosts[1]", "overlaps hosts[0]"},
		{"same host twice", vs("hosts: [a, a]\nhttp:\n- route:\n  - destination: {host: a}\n"), "spec.hosts[1]", "overlaps hosts[0]"},
		{"jwt claim routing bound to the mesh", vs("hosts: [a]\nhttp:\n- match:\n  - headers:\n      \"@request.auth.claims.group\": {exact: admin}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].headers[@request.auth.claims.group]", "bound to gateways"},
		{"jwt claim routing at a gateway", vs("hosts: [a.example.com]\ngateways: [istio-system/gw]\nhttp:\n- match:\n  - headers:\n      \"@request.auth.claims[group]\": {exact: admin}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].headers[@request.auth.claims[group]]", "not supported yet"},
		{"empty method prefix", vs("hosts: [a]\nhttp:\n- match:\n  - method: {prefix: \"\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].method.prefix", "empty prefix"},
		{"empty header prefix", vs("hosts: [a]\nhttp:\n- match:\n  - headers:\n      x-user: {prefix: \"\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].headers[x-user].prefix", "empty prefix"},
		{"regex too long", vs("hosts: [a]\nhttp:\n- match:\n  - uri: {regex: \"" + strings.Repeat("a", 1100) + "\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].match[0].uri.regex", "the limit is 1024"},
		{"all weights zero", vs("hosts: [a]\nhttp:\n- route:\n  - destination: {host: a, subset: v1}\n  - destination: {host: a, subset: v2}\n"), "spec.http[0].route", "all have weight 0"},
		{"tcp weights all zero", vs("hosts: [a]\ntcp:\n- route:\n  - destination: {host: a, subset: v1}\n  - destination: {host: a, subset: v2}\n"), "spec.tcp[0].route", "all have weight 0"},
		{"fault with redirect", vs("hosts: [a]\nhttp:\n- redirect: {uri: /x}\n  fault:\n    abort: {httpStatus: 500, percentage: {value: 1}}\n"), "spec.http[0].fault", "cannot be used together with redirect"},
		{"rewrite with directResponse", vs("hosts: [a]\nhttp:\n- directResponse: {status: 200}\n  rewrite: {uri: /x}\n"), "spec.http[0].rewrite", "together with directResponse"},
		{"redirect uri and prefixRewrite", vs("hosts: [a]\nhttp:\n- redirect: {uri: /a, prefixRewrite: /b}\n"), "spec.http[0].redirect.prefixRewrite", "cannot be set together with uri"},
		{"prefixRewrite with an exact match", vs("hosts: [a]\nhttp:\n- match:\n  - uri: {exact: /old}\n  redirect: {prefixRewrite: /new}\n"), "spec.http[0].match[0].uri", "every uri match to be a prefix match"},
		{"redirect scheme not http", vs("hosts: [a]\nhttp:\n- redirect: {scheme: ftp}\n"), "spec.http[0].redirect.scheme", "want http or https"},
		{"direct response body above 1MiB", vs("hosts: [a]\nhttp:\n- directResponse:\n    status: 200\n    body: {string: " + strings.Repeat("x", 1<<20+1) + "}\n"), "spec.http[0].directResponse.body", "at most 1MiB"},
		{"regex rewrite without rewrite", vs("hosts: [a]\nhttp:\n- rewrite:\n    uriRegexRewrite: {match: \"^/v1/(.*)\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].rewrite.uriRegexRewrite.rewrite", "missing"},
		{"authority rewritten twice", vs("hosts: [a]\nhttp:\n- rewrite: {authority: b.example.com}\n  headers:\n    request:\n      set: {\":authority\": c.example.com}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].headers.request.set[:authority]", "already rewritten at spec.http[0].rewrite.authority"},
		{"remove the host header", vs("hosts: [a]\nhttp:\n- headers:\n    request:\n      remove: [host]\n  route:\n  - destination: {host: a}\n"), "spec.http[0].headers.request.remove[0]", "cannot be removed"},
		{"set authority on a response", vs("hosts: [a]\nhttp:\n- headers:\n    response:\n      set: {\":authority\": b}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].headers.response.set[:authority]", "cannot be removed or set on a response"},
		{"unescaped percent in a header value", vs("hosts: [a]\nhttp:\n- headers:\n    response:\n      set: {x-load: \"50%\"}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].headers.response.set[x-load]", "unescaped '%'"},
		{"control character in a header value", vs("hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n    headers:\n      request:\n        add: {x-a: \"a\\x01b\"}\n"), "spec.http[0].route[0].headers.request.add[x-a]", "control character"},
		{"retry settings with zero attempts", vs("hosts: [a]\nhttp:\n- retries: {attempts: 0, perTryTimeout: 2s}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].retries.attempts", "turns retries off"},
		{"exponential delay", vs("hosts: [a]\nhttp:\n- fault:\n    delay: {exponentialDelay: 1s, percentage: {value: 5}}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.delay.exponentialDelay", "not supported"},
		{"http2 error abort", vs("hosts: [a]\nhttp:\n- fault:\n    abort: {http2Error: CANCEL, percentage: {value: 5}}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.abort.http2Error", "not supported"},
		{"fault percentage below 0.0001", vs("hosts: [a]\nhttp:\n- fault:\n    abort: {httpStatus: 500, percentage: {value: 0.00001}}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.abort.percentage.value", "smallest fraction 0.0001"},
		{"cors allow header with a space", vs("hosts: [a]\nhttp:\n- corsPolicy:\n    allowOrigins: [{exact: \"https://a.example.com\"}]\n    allowHeaders: [\"x token\"]\n  route:\n  - destination: {host: a}\n"), "spec.http[0].corsPolicy.allowHeaders[0]", "not allowed in an HTTP header name"},
		{"cors expose header with a slash", vs("hosts: [a]\nhttp:\n- corsPolicy:\n    exposeHeaders: [\"x/y\"]\n  route:\n  - destination: {host: a}\n"), "spec.http[0].corsPolicy.exposeHeaders[0]", "not allowed in an HTTP header name"},
		{"cors maxAge with a fraction", vs("hosts: [a]\nhttp:\n- corsPolicy:\n    maxAge: 1.5s\n  route:\n  - destination: {host: a}\n"), "spec.http[0].corsPolicy.maxAge", "not whole seconds"},
		{"cors empty origin", vs("hosts: [a]\nhttp:\n- corsPolicy:\n    allowOrigins: [{exact: \"\"}]\n  route:\n  - destination: {host: a}\n"), "spec.http[0].corsPolicy.allowOrigins[0]", "empty origin match"},
		{"exportTo star with others", vs("hosts: [a]\nexportTo: [\"*\", \".\"]\nhttp:\n- route:\n  - destination: {host: a}\n"), "spec.exportTo", "cannot be combined with other entries"},
		{"exportTo dot and own namespace", vs("hosts: [a]\nexportTo: [\".\", ns]\nhttp:\n- route:\n  - destination: {host: a}\n"), "spec.exportTo[1]", "already means the resource's own namespace"},
		{"exportTo none on a VirtualService", vs("hosts: [a]\nexportTo: [\"~\"]\nhttp:\n- route:\n  - destination: {host: a}\n"), "spec.exportTo[0]", "only allowed in a ServiceEntry"},
		// DestinationRule: traffic policy, load balancer, locality, connection pool, client TLS.
		{"empty traffic policy", dr("host: a\ntrafficPolicy: {}\n"), "spec.trafficPolicy", "empty; set at least one of"},
		{"port-level settings with only a port", dr("host: a\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}\n"), "spec.trafficPolicy.portLevelSettings[0]", "no settings for port"},
		{"empty connection pool", dr("host: a\ntrafficPolicy:\n  connectionPool: {}\n"), "spec.trafficPolicy.connectionPool", "set tcp or http"},
		{"tunnel with proxy protocol", dr("host: a\ntrafficPolicy:\n  tunnel: {targetHost: a.example.com, targetPort: 443}\n  proxyProtocol: {version: V1}\n"), "spec.trafficPolicy.proxyProtocol", "cannot be set together with tunnel"},
		{"tunnel target host invalid", dr("host: a\ntrafficPolicy:\n  tunnel: {targetHost: \"bad_host\", targetPort: 443}\n"), "spec.trafficPolicy.tunnel.targetHost", "invalid host"},
		{"h2 upgrade with client protocol", dr("host: a\ntrafficPolicy:\n  connectionPool:\n    http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}\n"), "spec.trafficPolicy.connectionPool.http.useClientProtocol", "h2UpgradePolicy UPGRADE"},
		{"http2 keepalive without timeout", dr("host: a\ntrafficPolicy:\n  connectionPool:\n    http:\n      http2KeepAlive: {interval: 30s}\n"), "spec.trafficPolicy.connectionPool.http.http2KeepAlive.timeout", "missing"},
		{"duplicate cookie attribute", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      httpCookie:\n        name: user\n        ttl: 0s\n        attributes: [{name: SameSite, value: Strict}, {name: SameSite, value: Lax}]\n"), "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1].name", "already set by attributes[0]"},
		{"minimumRingSize with maglev", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      useSourceIp: true\n      minimumRingSize: 1024\n      maglev: {tableSize: 65537}\n"), "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "ringHash or maglev"},
		{"maglev without table size", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      useSourceIp: true\n      maglev: {}\n"), "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "missing"},
		{"maglev table at the limit", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      useSourceIp: true\n      maglev: {tableSize: 5000011}\n"), "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "must be below 5000011"},
		{"locality and zone-aware balancing", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting: {enabled: true}\n    zoneAwareLbSetting: {enabled: true}\n"), "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting", "cannot be set together with localityLbSetting"},
		{"failover with a region priority label", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      failover: [{from: us-east, to: us-west}]\n      failoverPriority: [topology.kubernetes.io/region]\n  outlierDetection: {consecutive5xxErrors: 5}\n"), "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]", "cannot be used together with failover"},
		{"zone-aware priority on a topology label", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    zoneAwareLbSetting:\n      failoverPriority: [topology.kubernetes.io/zone]\n"), "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failoverPriority[0]", "already prefers"},
		{"locality wildcard in the middle", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute:\n      - from: \"us/*/a\"\n        to: {\"us/b/*\": 100}\n"), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from", "one '*' only"},
		{"locality weight zero", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute:\n      - from: \"us/a/*\"\n        to: {\"us/a/*\": 100, \"us/b/*\": 0}\n"), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to[us/b/*]", "between 1 and 100"},
		{"locality with an empty zone", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute:\n      - from: \"us//a\"\n        to: {\"us/b/*\": 100}\n"), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from", "empty part"},
		{"overlapping distribute sources", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute:\n      - from: \"us/*\"\n        to: {\"us/a/*\": 100}\n      - from: \"us/a/*\"\n        to: {\"us/b/*\": 100}\n"), "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[1].from", "overlaps \"us/*\""},
		{"failover to a zone", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      failover: [{from: us-east/a, to: us-west}]\n  outlierDetection: {consecutive5xxErrors: 5}\n"), "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "regions only"},
		{"failover with a wildcard", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      failover: [{from: \"us-*\", to: eu-west}]\n  outlierDetection: {consecutive5xxErrors: 5}\n"), "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "cannot contain '*'"},
		{"warmup without duration", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    simple: ROUND_ROBIN\n    warmup: {minimumPercent: 10}\n"), "spec.trafficPolicy.loadBalancer.warmup.duration", "missing"},
		{"warmup aggression zero", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    simple: ROUND_ROBIN\n    warmup: {duration: 60s, aggression: 0}\n"), "spec.trafficPolicy.loadBalancer.warmup.aggression", "must be above 0"},
		{"credentialName with caCertificates", dr("host: a\ntrafficPolicy:\n  tls: {mode: SIMPLE, credentialName: cred, caCertificates: /etc/ca.pem}\n"), "spec.trafficPolicy.tls.credentialName", "cannot be set together with"},
		{"insecureSkipVerify with caCertificates", dr("host: a\ntrafficPolicy:\n  tls: {mode: SIMPLE, insecureSkipVerify: true, caCertificates: /etc/ca.pem}\n"), "spec.trafficPolicy.tls.insecureSkipVerify", "skips server verification"},
		{"selector rule exported elsewhere", dr("host: a\nworkloadSelector: {matchLabels: {app: a}}\nexportTo: [other]\ntrafficPolicy:\n  tls: {mode: ISTIO_MUTUAL}\n"), "spec.exportTo[0]", "only be exported to its own namespace"},
		// Gateway: name, ports, binds, hosts, server TLS.
		{"gateway name with a dot", strings.Replace(obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"*\"]"), "name: r", "name: my.gw", 1), "metadata.name", "no dots"},
		{"gateway port without name", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, protocol: HTTP}\n  hosts: [\"*\"]"), "spec.servers[0].port.name", "missing"},
		{"gateway targetPort", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}\n  hosts: [\"*\"]"), "spec.servers[0].port.targetPort", "no effect on a Gateway"},
		{"unix bind with a port number", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  bind: unix:///var/run/gw.sock\n  hosts: [\"*\"]"), "spec.servers[0].port.number", "set number to 0"},
		{"unix bind relative path", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 0, name: http, protocol: HTTP}\n  bind: unix://gw.sock\n  hosts: [\"*\"]"), "spec.servers[0].bind", "absolute path"},
		{"gateway short host", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [reviews]"), "spec.servers[0].hosts[0]", "short name \"reviews\""},
		{"gateway partial wildcard", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"*foo.example.com\"]"), "spec.servers[0].hosts[0]", "invalid wildcard host"},
		{"two certificate sources", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [\"*\"]\n  tls: {mode: SIMPLE, credentialName: cred, serverCertificate: /c.pem, privateKey: /k.pem}"), "spec.servers[0].tls", "are exclusive"},
		{"istio mutual gateway with a CA", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: tls, protocol: TLS}\n  hosts: [\"*\"]\n  tls: {mode: ISTIO_MUTUAL, caCertificates: /ca.pem}"), "spec.servers[0].tls", "uses the mesh's certificates"},
		{"crl with simple tls", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [\"*\"]\n  tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, caCrl: /crl.pem}"), "spec.servers[0].tls.caCrl", "mode SIMPLE"},
		{"crl with credentialName", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [\"*\"]\n  tls: {mode: MUTUAL, credentialName: cred, caCrl: /crl.pem}"), "spec.servers[0].tls.caCrl", "cannot be used with credentialName"},
		{"tls settings on a tcp server", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 31400, name: tcp, protocol: TCP}\n  hosts: [\"*\"]\n  tls: {mode: SIMPLE, credentialName: cred}"), "spec.servers[0].tls", "takes no tls settings"},
		{"tlsCertificates entry without key", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [\"*\"]\n  tls:\n    mode: SIMPLE\n    tlsCertificates: [{serverCertificate: /c.pem}]"), "spec.servers[0].tls.tlsCertificates[0]", "needs both serverCertificate and privateKey"},
		// Sidecar: listener ports, unix sockets, ingress TLS, endpoints, egress proxy, hosts.
		{"sidecar egress targetPort", obj("networking.istio.io/v1", "Sidecar", "egress:\n- port: {number: 80, protocol: HTTP, name: http, targetPort: 8080}\n  hosts: [\"./*\"]"), "spec.egress[0].port.targetPort", "no effect on a Sidecar"},
		{"egress port 0 without a socket", obj("networking.istio.io/v1", "Sidecar", "egress:\n- port: {number: 0, protocol: HTTP, name: http}\n  hosts: [\"./*\"]"), "spec.egress[0].port.number", "needs bind to be a unix:// socket"},
		{"egress socket used twice", obj("networking.istio.io/v1", "Sidecar", "egress:\n- port: {number: 0, protocol: HTTP, name: a}\n  bind: unix:///var/run/out.sock\n  hosts: [\"./*\"]\n- port: {number: 0, protocol: HTTP, name: b}\n  bind: unix:///var/run/out.sock\n  hosts: [\"./*\"]"), "spec.egress[1].bind", "already used by egress[0]"},
		{"socket listener capturing traffic", obj("networking.istio.io/v1", "Sidecar", "egress:\n- port: {number: 0, protocol: HTTP, name: a}\n  bind: unix:///var/run/out.sock\n  captureMode: IPTABLES\n  hosts: [\"./*\"]"), "spec.egress[0].captureMode", "want DEFAULT or NONE"},
		{"ingress tls on an http port", obj("networking.istio.io/v1", "Sidecar", "ingress:\n- port: {number: 8443, protocol: HTTP, name: http}\n  defaultEndpoint: 127.0.0.1:8080\n  tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}"), "spec.ingress[0].tls", "takes no tls settings"},
		{"ingress tls with credentialName", obj("networking.istio.io/v1", "Sidecar", "ingress:\n- port: {number: 8443, protocol: HTTPS, name: https}\n  defaultEndpoint: 127.0.0.1:8080\n  tls: {mode: SIMPLE, credentialName: cred}"), "spec.ingress[0].tls.credentialName", "not supported on a Sidecar ingress listener"},
		{"ingress tls istio mutual", obj("networking.istio.io/v1", "Sidecar", "ingress:\n- port: {number: 8443, protocol: HTTPS, name: https}\n  defaultEndpoint: 127.0.0.1:8080\n  tls: {mode: ISTIO_MUTUAL}"), "spec.ingress[0].tls.mode", "not allowed on a Sidecar ingress listener"},
		{"defaultEndpoint on another host", obj("networking.istio.io/v1", "Sidecar", "ingress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  defaultEndpoint: 10.0.0.5:8080"), "spec.ingress[0].defaultEndpoint", "must point at the workload itself"},
		{"defaultEndpoint relative socket", obj("networking.istio.io/v1", "Sidecar", "ingress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  defaultEndpoint: unix://app.sock"), "spec.ingress[0].defaultEndpoint", "absolute path"},
		{"egress proxy without a port", obj("networking.istio.io/v1", "Sidecar", "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n  egressProxy: {host: proxy.example.com}"), "spec.outboundTrafficPolicy.egressProxy.port", "missing"},
		{"sidecar short egress host", obj("networking.istio.io/v1", "Sidecar", "egress:\n- hosts: [\"./reviews\"]"), "spec.egress[0].hosts[0]", "short name \"reviews\""},
		{"sidecar bad port name", obj("networking.istio.io/v1", "Sidecar", "egress:\n- port: {number: 80, protocol: HTTP, name: HTTP_Port}\n  hosts: [\"./*\"]"), "spec.egress[0].port.name", "invalid port name"},
		// ServiceEntry: port names, hosts per protocol, DYNAMIC_DNS, unix endpoints, exportTo.
		{"service entry port without name", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, protocol: HTTP}]\nresolution: DNS"), "spec.ports[0].name", "missing"},
		{"service entry port name invalid", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: Web_1, protocol: HTTP}]\nresolution: DNS"), "spec.ports[0].name", "invalid port name"},
		{"several hosts on a tcp port", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com, b.example.com]\nports: [{number: 5432, name: pg, protocol: TCP}]\nresolution: DNS"), "spec.ports[0].protocol", "several hosts share this TCP port"},
		{"dynamic dns with a fixed host", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DYNAMIC_DNS"), "spec.hosts[0]", "not a wildcard"},
		{"dynamic dns with addresses", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [\"*.example.com\"]\naddresses: [10.0.0.1]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DYNAMIC_DNS"), "spec.addresses", "not allowed with resolution DYNAMIC_DNS"},
		{"dynamic dns on a tcp port", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [\"*.example.com\"]\nports: [{number: 5432, name: pg, protocol: TCP}]\nresolution: DYNAMIC_DNS"), "spec.ports[0].protocol", "not allowed with resolution DYNAMIC_DNS"},
		{"unix endpoint with two ports", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: http2, protocol: HTTP}]\nresolution: STATIC\nendpoints:\n- address: unix:///var/run/a.sock"), "spec.endpoints[0].address", "exactly one port"},
		{"exportTo none with others", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS\nexportTo: [\"~\", \".\"]"), "spec.exportTo", "cannot be combined with other entries"},
		// WorkloadEntry and WorkloadGroup.
		{"workload entry relative socket", obj("networking.istio.io/v1", "WorkloadEntry", "address: unix://app.sock"), "spec.address", "absolute path"},
		{"workload entry bad port name", obj("networking.istio.io/v1", "WorkloadEntry", "address: 10.0.0.1\nports: {HTTP_1: 8080}"), "spec.ports[HTTP_1]", "invalid port name"},
		{"probe header name with underscore", obj("networking.istio.io/v1", "WorkloadGroup", "template: {labels: {app: a}}\nprobe:\n  httpGet:\n    port: 8080\n    httpHeaders: [{name: x_probe, value: a}]"), "spec.probe.httpGet.httpHeaders[0].name", "not a probe header name"},
		// PeerAuthentication.
		{"port-level mtls with empty selector", obj("security.istio.io/v1", "PeerAuthentication", "selector: {matchLabels: {}}\nportLevelMtls:\n  8080: {mode: DISABLE}"), "spec.portLevelMtls", "needs a selector with matchLabels"},
		// AuthorizationPolicy: actions, sources, paths, conditions, targets.
		{"deny without rules", obj("security.istio.io/v1", "AuthorizationPolicy", "action: DENY"), "spec.rules", "never applies"},
		{"custom without rules", obj("security.istio.io/v1", "AuthorizationPolicy", "action: CUSTOM\nprovider: {name: ext-authz}"), "spec.rules", "never applies"},
		{"custom with principals", obj("security.istio.io/v1", "AuthorizationPolicy", "action: CUSTOM\nprovider: {name: ext-authz}\nrules:\n- from:\n  - source: {principals: [cluster.local/ns/a/sa/b]}"), "spec.rules[0].from[0].source.principals", "not supported with action CUSTOM"},
		{"custom with an identity condition", obj("security.istio.io/v1", "AuthorizationPolicy", "action: CUSTOM\nprovider: {name: ext-authz}\nrules:\n- when:\n  - key: source.namespace\n    values: [a]"), "spec.rules[0].when[0].key", "not supported with action CUSTOM"},
		{"service accounts with namespaces", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- from:\n  - source: {serviceAccounts: [a/b], namespaces: [a]}"), "spec.rules[0].from[0].source.serviceAccounts", "cannot be combined with principals or namespaces"},
		{"service account wildcard", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- from:\n  - source: {serviceAccounts: [\"a/*\"]}"), "spec.rules[0].from[0].source.serviceAccounts[0]", "cannot contain '*'"},
		{"service account with two slashes", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- from:\n  - source: {serviceAccounts: [a/b/c]}"), "spec.rules[0].from[0].source.serviceAccounts[0]", "not a service account"},
		{"trust domain with a slash", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- from:\n  - source: {trustDomains: [cluster.local/ns]}"), "spec.rules[0].from[0].source.trustDomains[0]", "cannot contain '/'"},
		{"trust domain wildcard in the middle", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- from:\n  - source: {notTrustDomains: [\"a*b\"]}"), "spec.rules[0].from[0].source.notTrustDomains[0]", "at the start or the end"},
		{"path template not last", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- to:\n  - operation: {paths: [\"/api/{**}/x/{*}\"]}"), "spec.rules[0].to[0].operation.paths[0]", "must be the last segment"},
		{"path with a stray brace", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- to:\n  - operation: {notPaths: [\"/api/{id}\"]}"), "spec.rules[0].to[0].operation.notPaths[0]", "whole {*} or {**} segments"},
		{"empty condition value", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- when:\n  - key: request.headers[x-id]\n    values: [\"\"]"), "spec.rules[0].when[0].values[0]", "empty value"},
		{"destination labels condition", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- when:\n  - key: destination.labels[app]\n    values: [a]"), "spec.rules[0].when[0].key", "use the policy's selector"},
		{"target of an unknown kind", obj("security.istio.io/v1", "AuthorizationPolicy", "targetRef: {kind: Deployment, name: a}\naction: ALLOW\nrules: [{}]"), "spec.targetRef.kind", "cannot be a target"},
		{"target with a namespace", obj("security.istio.io/v1", "AuthorizationPolicy", "targetRefs:\n- {kind: Service, group: \"\", name: a, namespace: ns}\naction: ALLOW\nrules: [{}]"), "spec.targetRefs[0].namespace", "must not be set"},
		// RequestAuthentication: JWT rule fields.
		{"empty audience", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  audiences: [\"\"]"), "spec.jwtRules[0].audiences[0]", "empty audience"},
		{"jwks not JSON", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  jwks: not-json"), "spec.jwtRules[0].jwks", "not a JSON Web Key Set"},
		{"jwks key without material", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  jwks: '{\"keys\": [{\"kty\": \"RSA\"}]}'"), "spec.jwtRules[0].jwks", "key 0 is not a usable JSON Web Key"},
		{"token header without name", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  fromHeaders: [{prefix: \"Bearer \"}]"), "spec.jwtRules[0].fromHeaders[0].name", "missing"},
		{"payload header with a space", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  outputPayloadToHeader: \"x payload\""), "spec.jwtRules[0].outputPayloadToHeader", "only letters, digits"},
		{"jwks without keys", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  jwks: '{\"keys\": []}'"), "spec.jwtRules[0].jwks", "holds no keys"},
		{"empty token query parameter", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  fromParams: [\"\"]"), "spec.jwtRules[0].fromParams[0]", "empty query parameter name"},
		{"empty token cookie", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  fromCookies: [\"\"]"), "spec.jwtRules[0].fromCookies[0]", "empty cookie name"},
		{"claim header with a dot", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  outputClaimToHeaders: [{header: x.sub, claim: sub}]"), "spec.jwtRules[0].outputClaimToHeaders[0].header", "only letters, digits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := check(t, tc.yaml)
			if len(res.Errors) == 0 {
				t.Fatalf("got no errors, want one at %q containing %q", tc.field, tc.msg)
			}
			for _, e := range res.Errors {
				if e.Field == tc.field && strings.Contains(e.Message, tc.msg) {
					if e.Source != "in.yaml#1" {
						t.Errorf("got source %q, want %q", e.Source, "in.yaml#1")
					}
					return
				}
			}
			var got []string
			for _, e := range res.Errors {
				got = append(got, e.String())
			}
			t.Errorf("got errors\n  %s\nwant one at %q containing %q", strings.Join(got, "\n  "), tc.field, tc.msg)
		})
	}
}

func TestValidInputs(t *testing.T) {
	tests := []struct {
		name string
		yaml string
	}{
		{"snake_case fields", vs("hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n  retries: {attempts: 3, per_try_timeout: 2s, retry_on: \"5xx,connect-failure,503\"}\n")},
		{"header presence match", vs("hosts: [a]\nhttp:\n- match:\n  - headers:\n      x-debug: {}\n  route:\n  - destination: {host: a}\n")},
		{"delegate VirtualService", vs("http:\n- match:\n  - uri: {prefix: /a}\n  route:\n  - destination: {host: a}\n")},
		{"quoted port number", vs("hosts: [a]\nhttp:\n- route:\n  - destination:\n      host: a\n      port: {number: \"80\"}\n")},
		{"wildcard host on a gateway", vs("hosts: [\"*\"]\ngateways: [istio-system/ingress]\nhttp:\n- route:\n  - destination: {host: a}\n")},
		{"redirect with derivePort", vs("hosts: [a]\nhttp:\n- redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}\n")},
		{"east-west gateway (AUTO_PASSTHROUGH)", obj("networking.istio.io/v1", "Gateway", "selector: {istio: eastwestgateway}\nservers:\n- port: {number: 15443, name: tls, protocol: TLS}\n  hosts: [\"*.local\"]\n  tls: {mode: AUTO_PASSTHROUGH}")},
		{"passthrough gateway", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: tls, protocol: TLS}\n  hosts: [\"*.example.com\"]\n  tls: {mode: PASSTHROUGH}")},
		{"mutual gateway with credential", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [\"ns/a.example.com\"]\n  tls: {mode: MUTUAL, credentialName: cred}")},
		{"http gateway redirecting to https", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"*\"]\n  tls: {httpsRedirect: true}")},
		{"dns service entry", obj("networking.istio.io/v1beta1", "ServiceEntry", "hosts: [api.example.com]\nlocation: MESH_EXTERNAL\nports: [{number: 443, name: https, protocol: TLS}]\nresolution: DNS")},
		{"static service entry", obj("networking.istio.io/v1alpha3", "ServiceEntry", "hosts: [db.internal]\naddresses: [10.1.0.0/24]\nports: [{number: 5432, name: tcp, protocol: TCP}]\nresolution: STATIC\nendpoints:\n- address: 10.1.0.5\n  labels: {version: v1}")},
		{"workload entry", obj("networking.istio.io/v1", "WorkloadEntry", "address: 10.0.0.7\nlabels: {app: vm}\nserviceAccount: vm-sa\nports: {http: 8080}")},
		{"workload group", obj("networking.istio.io/v1", "WorkloadGroup", "metadata: {labels: {app: vm}}\ntemplate: {serviceAccount: vm-sa, ports: {http: 8080}}\nprobe:\n  httpGet: {port: 8080, path: /ready}")},
		{"sidecar", obj("networking.istio.io/v1", "Sidecar", "egress:\n- port: {number: 80, protocol: HTTP, name: http}\n  hosts: [\"./*\"]\n- hosts: [\"istio-system/*\", \"~/*\"]\noutboundTrafficPolicy: {mode: REGISTRY_ONLY}")},
		{"peer authentication", obj("security.istio.io/v1beta1", "PeerAuthentication", "selector: {matchLabels: {app: a}}\nmtls: {mode: STRICT}\nportLevelMtls:\n  8080: {mode: DISABLE}")},
		{"authorization policy", obj("security.istio.io/v1", "AuthorizationPolicy", "action: ALLOW\nrules:\n- from:\n  - source: {principals: [\"cluster.local/ns/default/sa/sleep\"]}\n  to:\n  - operation: {methods: [GET], paths: [\"/info*\"], ports: [\"8080\"]}\n  when:\n  - key: request.headers[version]\n    values: [v1]")},
		{"allow nothing policy", obj("security.istio.io/v1", "AuthorizationPolicy", "{}")},
		{"request authentication", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: testing@secure.istio.io\n  jwksUri: https://example.com/jwks.json\n  fromHeaders: [{name: x-jwt, prefix: \"Bearer \"}]")},
		{"telemetry access logging", obj("telemetry.istio.io/v1", "Telemetry", "accessLogging:\n- match: {mode: CLIENT}\n  providers: [{name: envoy}]\n  filter: {expression: \"response.code >= 400 || request.method == 'POST' && !connection.mtls\"}\n- match: {mode: SERVER}\n  disabled: true")},
		{"telemetry metrics", obj("telemetry.istio.io/v1", "Telemetry", "selector: {matchLabels: {app: a}}\nmetrics:\n- providers: [{name: prometheus}]\n  overrides:\n  - match: {metric: REQUEST_COUNT, mode: CLIENT}\n    disabled: true\n  - match: {metric: ALL_METRICS}\n    tagOverrides:\n      request_protocol: {operation: REMOVE}\n      user: {value: \"request.headers['x-user'] | 'anonymous'\"}\n      team: {operation: UPSERT, value: \"'payments'\"}\n      peer_app: {value: upstream_peer.app}\n  - match: {customMetric: istio_tcp_sent_bytes_total, mode: SERVER}\n    disabled: false")},
		{"telemetry tracing", obj("telemetry.istio.io/v1", "Telemetry", "selector: {matchLabels: {app: a}}\ntracing:\n- match: {mode: CLIENT}\n  providers: [{name: otel}]\n  randomSamplingPercentage: 12.5\n  disableSpanReporting: false\n  customTags:\n    team: {literal: {value: payments}}\n    user: {header: {name: x-user, defaultValue: anon}}\n    pod: {environment: {name: POD_NAME}}\n- match: {mode: SERVER}\n  providers: [{name: zipkin}]")},
		// Inputs Istio accepts that earlier Trellis rules rejected.
		{"authority set in request headers", vs("hosts: [a]\nhttp:\n- headers:\n    request:\n      set: {\":authority\": b.example.com}\n  route:\n  - destination: {host: a}\n")},
		{"withoutHeaders presence regex", vs("hosts: [a]\nhttp:\n- match:\n  - withoutHeaders:\n      x-debug: {regex: \"*\"}\n  route:\n  - destination: {host: a}\n")},
		{"escaped percent and a variable in a header value", vs("hosts: [a]\nhttp:\n- headers:\n    response:\n      set: {x-load: \"100%% from %HOSTNAME%\"}\n  route:\n  - destination: {host: a}\n")},
		{"jwt rule with jwksUri only", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- jwksUri: https://example.com/jwks.json")},
		{"sidecar excluding a namespace", obj("networking.istio.io/v1", "Sidecar", "egress:\n- hosts: [\"*/*\", \"~legacy/*\"]")},
		{"sidecar defaultEndpoint without host", obj("networking.istio.io/v1", "Sidecar", "ingress:\n- port: {number: 9080, protocol: HTTP, name: http}\n  defaultEndpoint: \":8080\"")},
		{"tcp idle timeout turned off", dr("host: a\ntrafficPolicy:\n  connectionPool:\n    tcp: {idleTimeout: 0s}\n")},
		{"service account and trust domain conditions", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- when:\n  - key: source.serviceAccount\n    values: [default/sleep]\n  - key: source.trustDomain\n    values: [\"*.local\"]")},
		{"distribute with failover priority", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute:\n      - from: \"us/a/*\"\n        to: {\"us/a/*\": 80, \"us/b/*\": 20}\n      failoverPriority: [network]\n  outlierDetection: {consecutive5xxErrors: 5}\n")},
		{"gateway host by IP", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"10.0.0.1\"]")},
		{"gateway on a unix socket", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 0, name: http, protocol: HTTP}\n  bind: unix:///var/run/gw.sock\n  hosts: [\"*\"]")},
		{"sidecar listener on a unix socket", obj("networking.istio.io/v1", "Sidecar", "egress:\n- port: {number: 0, protocol: HTTP, name: http}\n  bind: unix:///var/run/out.sock\n  hosts: [\"./*\"]")},
		{"dynamic dns service entry", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [\"*.example.com\"]\nports: [{number: 443, name: tls, protocol: TLS}]\nresolution: DYNAMIC_DNS\nlocation: MESH_EXTERNAL")},
		{"several hosts on an https port", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com, b.example.com]\nports: [{number: 443, name: https, protocol: HTTPS}]\nresolution: DNS")},
		{"deny every request", obj("security.istio.io/v1", "AuthorizationPolicy", "action: DENY\nrules: [{}]")},
		{"path templates", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- to:\n  - operation: {paths: [\"/api/{*}/items/{**}\"]}")},
		{"target a service", obj("security.istio.io/v1", "AuthorizationPolicy", "targetRefs:\n- {kind: Service, group: \"\", name: a}\naction: ALLOW\nrules: [{}]")},
		{"inline jwks", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  jwks: '{\"keys\": [{\"kty\": \"RSA\", \"e\": \"AQAB\", \"n\": \"xyz\"}]}'")},
		{"destination rule everything", dr("host: reviews\ntrafficPolicy:\n  loadBalancer:\n    consistentHash: {httpCookie: {name: user, ttl: 0s}}\n  connectionPool:\n    tcp: {maxConnections: 100, connectTimeout: 30ms}\n    http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 1}\n  outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 100}\n  tls: {mode: ISTIO_MUTUAL}\nsubsets:\n- name: v1\n  labels: {version: v1}\n  trafficPolicy:\n    loadBalancer: {simple: LEAST_REQUEST}")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := check(t, tc.yaml)
			for _, e := range res.Errors {
				t.Errorf("got error %s, want none", e.String())
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		field string
		msg   string
	}{
		{"weights sum to 90", vs(strings.Replace(route2, "%s", "0", 1)), "spec.http[0].route", "add up to 90, not 100"},
		{"tcp weights sum to 150", vs("hosts: [a]\ntcp:\n- route:\n  - destination: {host: a, subset: v1}\n    weight: 100\n  - destination: {host: a, subset: v2}\n    weight: 50\n"), "spec.tcp[0].route", "add up to 150"},
		{"single destination weight", vs("hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n    weight: 50\n"), "spec.http[0].route[0].weight", "receives all traffic"},
		{"selector with empty labels", obj("security.istio.io/v1", "AuthorizationPolicy", "selector: {matchLabels: {}}\naction: DENY\nrules: [{}]"), "spec.selector.matchLabels", "applies to every workload"},
		{"service entry without ports", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nresolution: DNS"), "spec.ports", "missing"},
		{"mirror percentage alone", vs("hosts: [a]\nhttp:\n- mirrorPercentage: {value: 5}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].mirrorPercentage", "no effect"},
		{"httpsRedirect on a tls server", obj("networking.istio.io/v1", "Gateway", "servers:\n- port: {number: 443, name: tls, protocol: TLS}\n  hosts: [\"*\"]\n  tls: {mode: PASSTHROUGH, httpsRedirect: true}"), "spec.servers[0].tls.httpsRedirect", "only has an effect on HTTP servers"},
		{"workload selector with resolution NONE", obj("networking.istio.io/v1", "ServiceEntry", "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: NONE\nworkloadSelector: {labels: {app: a}}"), "spec.workloadSelector", "no effect with resolution NONE"},
		{"workload entry reached through its network", obj("networking.istio.io/v1", "WorkloadEntry", "network: vpc-2\nlabels: {app: a}"), "spec.address", "through network \"vpc-2\"'s east-west gateway, which Trellis does not have yet"},
		{"mirror with directResponse", vs("hosts: [a]\nhttp:\n- directResponse: {status: 204}\n  mirror: {host: b}\n"), "spec.http[0]", "mirror acts on routed traffic"},
		{"sidecar selector without labels", obj("networking.istio.io/v1", "Sidecar", "workloadSelector: {}\negress:\n- hosts: [\"./*\"]"), "spec.workloadSelector.labels", "applies to every workload"},
		{"repeated egress host", obj("networking.istio.io/v1", "Sidecar", "egress:\n- hosts: [\"./*\", \"ns/a.example.com\"]"), "spec.egress[0].hosts[1]", "already selects in namespace \"ns\""},
		{"every host and more", obj("networking.istio.io/v1", "Sidecar", "egress:\n- hosts: [\"*/*\", \"istio-system/*\"]"), "spec.egress[0].hosts", "already selects every host"},
		{"deprecated consecutiveErrors", dr("host: a\ntrafficPolicy:\n  outlierDetection: {consecutiveErrors: 5}\n"), "spec.trafficPolicy.outlierDetection.consecutiveErrors", "deprecated"},
		{"deprecated minimumRingSize", dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    consistentHash: {useSourceIp: true, minimumRingSize: 1024}\n"), "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "deprecated"},
		{"deprecated mirrorPercent", vs("hosts: [a]\nhttp:\n- mirror: {host: b}\n  mirrorPercent: 10\n  route:\n  - destination: {host: a}\n"), "spec.http[0].mirrorPercent", "deprecated"},
		{"duplicate route name", vs("hosts: [a]\nhttp:\n- name: r\n  route:\n  - destination: {host: a}\n- name: r\n  route:\n  - destination: {host: b}\n"), "spec.http[1].name", "used more than once"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := check(t, tc.yaml)
			for _, e := range res.Errors {
				t.Errorf("got error %s, want none", e.String())
			}
			for _, w := range res.Warnings {
				if w.Field == tc.field && strings.Contains(w.Message, tc.msg) {
					return
				}
			}
			t.Errorf("got warnings %v, want one at %q containing %q", res.Warnings, tc.field, tc.msg)
		})
	}
}

func TestIssueString(t *testing.T) {
	res := check(t, strings.Replace(vs(strings.Replace(route2, "%s", "110", 1)), "name: r\n  namespace: ns", "name: vs-bill-service\n  namespace: istio-demo", 1))
	if len(res.Errors) != 1 {
		t.Fatalf("got %d errors, want 1: %v", len(res.Errors), res.Errors)
	}
	got := res.Errors[0].String()
	want := "in.yaml#1 VirtualService istio-demo/vs-bill-service: spec.http[0].route[1].weight: must be between 0 and 100, got 110"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEveryProblemReported(t *testing.T) {
	res := check(t, vs("hosts: [a]\nhttp:\n- timeout: 5\n  rout: []\n  route:\n  - destination: {host: a}\n    weight: x\n"))
	want := map[string]bool{"spec.http[0].timeout": false, "spec.http[0].rout": false, "spec.http[0].route[0].weight": false}
	assertAll(t, res, want)
	// Schema problems (an unknown field) and semantic ones (a weight out of
	// range, a duplicate subset) are reported in one pass.
	res = check(t, dr("host: a\ntrafficPolicy:\n  loadBalancer: {simpel: RANDOM}\nsubsets:\n- name: v1\n- name: v1\n"))
	assertAll(t, res, map[string]bool{"spec.trafficPolicy.loadBalancer.simpel": false, "spec.subsets[1].name": false})
}

func assertAll(t *testing.T, res Result, want map[string]bool) {
	t.Helper()
	for _, e := range res.Errors {
		if _, ok := want[e.Field]; ok {
			want[e.Field] = true
		}
	}
	for f, seen := range want {
		if !seen {
			t.Errorf("no error at %s; got %v", f, res.Errors)
		}
	}
}
