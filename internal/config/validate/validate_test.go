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
		{"abort without status", vs("hosts: [a]\nhttp:\n- fault:\n    abort:\n      percentage: {value: 5}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.abort.httpStatus", "missing"},
		{"delay without fixedDelay", vs("hosts: [a]\nhttp:\n- fault:\n    delay:\n      percentage: {value: 5}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].fault.delay.fixedDelay", "missing"},
		{"mirror percentage above 100", vs("hosts: [a]\nhttp:\n- mirror: {host: b}\n  mirrorPercentage: {value: 101}\n  route:\n  - destination: {host: a}\n"), "spec.http[0].mirrorPercentage.value", "between 0 and 100"},
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
		{"custom action without provider", obj("security.istio.io/v1", "AuthorizationPolicy", "action: CUSTOM\nrules:\n- to:\n  - operation: {paths: [/admin]}"), "spec.provider.name", "missing"},
		{"unknown action", obj("security.istio.io/v1", "AuthorizationPolicy", "action: MAYBE"), "spec.action", "want one of ALLOW, DENY, AUDIT, CUSTOM"},
		{"unknown condition key", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- when:\n  - key: request.color\n    values: [red]"), "spec.rules[0].when[0].key", "unknown attribute"},
		{"empty source", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- from:\n  - source: {}"), "spec.rules[0].from[0].source", "empty source"},
		{"bad ip block", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- from:\n  - source: {ipBlocks: [300.1.1.1]}"), "spec.rules[0].from[0].source.ipBlocks[0]", "not a valid IP"},
		{"bad operation port", obj("security.istio.io/v1", "AuthorizationPolicy", "rules:\n- to:\n  - operation: {ports: [http]}"), "spec.rules[0].to[0].operation.ports[0]", "not a port number"},
		{"jwt rule without issuer or jwksUri", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- audiences: [app]"), "spec.jwtRules[0].issuer", "missing"},
		{"jwt bad jwks uri", obj("security.istio.io/v1", "RequestAuthentication", "jwtRules:\n- issuer: me\n  jwksUri: not-a-url"), "spec.jwtRules[0].jwksUri", "not an http(s) URL"},
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
