package install

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (run go test ./internal/install -update and review the diff); got:\n%s", path, got)
	}
}

func TestManifestGoldenPerProfile(t *testing.T) {
	for _, p := range Profiles() {
		t.Run(p, func(t *testing.T) {
			s, err := Load(Options{Set: []string{"profile=" + p}})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			comps, err := Render(s)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			y, err := YAML(comps)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "manifest-"+p+".yaml", y)
			again, _ := Render(s)
			y2, _ := YAML(again)
			if string(y) != string(y2) {
				t.Errorf("two renders of profile %s differ", p)
			}
		})
	}
}

// TestManifestEastWest: the default profile plus Istio's east-west
// gateway for network2 (golden manifest-eastwest.yaml): a LoadBalancer
// Service labelled topology.istio.io/network=network2 with port 15443
// named tls, and a router Deployment labelled istio: eastwestgateway on
// that network.
func TestManifestEastWest(t *testing.T) {
	s := mustLoad(t, "values.global.network=network2", "values.global.multiCluster.clusterName=cluster2",
		"components.ingressGateways[1].name=istio-eastwestgateway", "components.ingressGateways[1].enabled=true")
	comps, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	y, err := YAML(comps)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "manifest-eastwest.yaml", y)
	var svc, dep *unstructured.Unstructured
	for _, o := range Objects(comps) {
		if o.GetName() == EastWestGatewayName {
			switch o.GetKind() {
			case "Service":
				svc = o
			case "Deployment":
				dep = o
			}
		}
	}
	if svc == nil || dep == nil {
		t.Fatal("no east-west gateway Service and Deployment")
	}
	typ, _, _ := unstructured.NestedString(svc.Object, "spec", "type")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	tls := false
	for _, p := range ports {
		pm := p.(map[string]any)
		tls = tls || (pm["name"] == "tls" && pm["port"] == int64(15443))
	}
	if typ != "LoadBalancer" || !tls || svc.GetLabels()[LabelNetwork] != "network2" {
		t.Errorf("service: type %s, tls 15443 %v, labels %v", typ, tls, svc.GetLabels())
	}
	sel, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "selector", "matchLabels")
	if sel["istio"] != "eastwestgateway" {
		t.Errorf("deployment selector %v, want istio: eastwestgateway", sel)
	}
}

func TestProfilesContents(t *testing.T) {
	kinds := func(p string) map[string]int {
		s, err := Load(Options{Set: []string{"profile=" + p}})
		if err != nil {
			t.Fatalf("load %s: %v", p, err)
		}
		comps, err := Render(s)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, o := range Objects(comps) {
			out[o.GetKind()+"/"+o.GetName()]++
		}
		return out
	}
	cases := []struct {
		profile string
		has     []string
		hasNot  []string
	}{
		{"default", []string{"Deployment/trellisd", "Deployment/istio-ingressgateway", "CustomResourceDefinition/virtualservices.networking.istio.io", "MutatingWebhookConfiguration/trellis-sidecar-injector", "ValidatingWebhookConfiguration/trellis-validator", "Namespace/trellis-system"}, []string{"Deployment/istio-egressgateway"}},
		{"demo", []string{"Deployment/trellisd", "Deployment/istio-ingressgateway", "Deployment/istio-egressgateway", "Service/istio-egressgateway"}, nil},
		{"minimal", []string{"Deployment/trellisd", "CustomResourceDefinition/gateways.networking.istio.io"}, []string{"Deployment/istio-ingressgateway"}},
		{"remote", []string{"CustomResourceDefinition/destinationrules.networking.istio.io", "ClusterRole/trellis-reader"}, []string{"Deployment/trellisd", "Deployment/istio-ingressgateway"}},
		{"empty", nil, []string{"Deployment/trellisd", "Namespace/trellis-system"}},
	}
	for _, c := range cases {
		t.Run(c.profile, func(t *testing.T) {
			got := kinds(c.profile)
			for _, k := range c.has {
				if got[k] == 0 {
					t.Errorf("profile %s: got no %s, want one", c.profile, k)
				}
			}
			for _, k := range c.hasNot {
				if got[k] != 0 {
					t.Errorf("profile %s: got %s, want none", c.profile, k)
				}
			}
		})
	}
}

func TestLoadValues(t *testing.T) {
	dir := t.TempDir()
	over := filepath.Join(dir, "over.yaml")
	os.WriteFile(over, []byte("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: demo\n  values:\n    global:\n      proxy:\n        concurrency: 4\n"), 0o644)
	s, err := Load(Options{Files: []string{over}, Set: []string{
		"values.global.proxy.includeIPRanges=10.0.0.0/8,172.16.0.0/12",
		"values.global.proxy.excludeInboundPorts=22",
		"meshConfig.accessLogFile=/dev/stdout",
		"values.global.mtls.enabled=true",
		"values.sidecarInjectorWebhook.enableNamespacesByDefault=true",
		"components.egressGateways[0].enabled=false",
		"values.global.tag=1.20",
		"values.pilot.env.ENABLE_NATIVE_SIDECARS=false",
		"meshConfig.defaultConfig.holdApplicationUntilProxyStarts=false",
		"meshConfig.defaultConfig.terminationDrainDuration=12.5s",
	}})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"profile from file", s.Profile, "demo"},
		{"concurrency from file", s.Values.Global.Proxy.Concurrency, int64(4)},
		{"includeIPRanges", s.Values.Global.Proxy.IncludeIPRanges, "10.0.0.0/8,172.16.0.0/12"},
		{"excludeInboundPorts", s.Values.Global.Proxy.ExcludeInboundPorts, "22"},
		{"accessLogFile", s.MeshConfig.AccessLogFile, "/dev/stdout"},
		{"mtls", s.Values.Global.MTLS.Enabled, true},
		{"enableNamespacesByDefault", s.Values.SidecarInjectorWebhook.EnableNamespacesByDefault, true},
		{"egress gateway disabled by --set", s.Components.EgressGateways[0].Enabled, false},
		{"tag kept as written", s.Values.Global.Tag, "1.20"},
		{"demo proxy request", s.Values.Global.Proxy.Resources.Requests["cpu"], "10m"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	ic := InjectConfig(s)
	if ic.IncludeIPRanges != "10.0.0.0/8,172.16.0.0/12" || !ic.EnableNamespacesByDefault || ic.ProxyImage != "ghcr.io/trellis-mesh/proxy:1.20" {
		t.Errorf("inject config: got %+v", ic)
	}
	if ic.NativeSidecars != "false" || ic.HoldApplicationUntilProxyStarts || ic.TerminationDrainDuration != "12.5s" {
		t.Errorf("inject config lifecycle: got nativeSidecars=%q hold=%v drain=%q, want false, false, 12.5s", ic.NativeSidecars, ic.HoldApplicationUntilProxyStarts, ic.TerminationDrainDuration)
	}
	if d := InjectConfig(mustLoad(t, "profile=default")); d.NativeSidecars != "auto" || !d.HoldApplicationUntilProxyStarts || d.TerminationDrainDuration != "5s" {
		t.Errorf("default profile's inject config lifecycle: got nativeSidecars=%q hold=%v drain=%q, want auto, true, 5s", d.NativeSidecars, d.HoldApplicationUntilProxyStarts, d.TerminationDrainDuration)
	}
}

// The multi-cluster values reach what trellisd and the proxies read: the
// Deployment's --cluster-id, the injector's CLUSTER_ID/NETWORK/MESH_ID and
// the system namespace's network label.
func TestMultiClusterValues(t *testing.T) {
	s := mustLoad(t, "profile=minimal", "values.global.multiCluster.clusterName=cluster2", "values.global.network=network2", "values.global.meshID=mesh1")
	ic := InjectConfig(s)
	if ic.ClusterID != "cluster2" || ic.Network != "network2" || ic.MeshID != "mesh1" {
		t.Errorf("inject config: got cluster %q network %q mesh %q, want cluster2, network2, mesh1", ic.ClusterID, ic.Network, ic.MeshID)
	}
	comps, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	var args, nsLabel string
	for _, o := range Objects(comps) {
		switch {
		case o.GetKind() == "Deployment" && o.GetName() == ControlPlaneName:
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			a, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
			args = strings.Join(a, " ")
		case o.GetKind() == "Namespace":
			nsLabel = o.GetLabels()[LabelNetwork]
		}
	}
	if !strings.Contains(args, "--cluster-id=cluster2") {
		t.Errorf("trellisd args: got %q, want --cluster-id=cluster2", args)
	}
	if nsLabel != "network2" {
		t.Errorf("system namespace %s label: got %q, want network2", LabelNetwork, nsLabel)
	}
	if d := InjectConfig(mustLoad(t, "profile=default")); d.ClusterID != "Kubernetes" || d.MeshID != "cluster.local" || d.Network != "" {
		t.Errorf("defaults: got cluster %q mesh %q network %q, want Kubernetes, cluster.local and none", d.ClusterID, d.MeshID, d.Network)
	}
}

func TestLoadRejects(t *testing.T) {
	cases := []struct {
		name string
		set  []string
		want string
	}{
		{"unknown value", []string{"values.global.proxy.bogus=1"}, "values.global.proxy.bogus: unknown setting"},
		{"unknown profile", []string{"profile=ambient"}, `profile "ambient": unknown; choose one of default, demo, empty, minimal, remote`},
		{"bad cidr", []string{"values.global.proxy.includeIPRanges=10.0.0.0/33"}, `values.global.proxy.includeIPRanges: "10.0.0.0/33" is not a CIDR`},
		{"bad port", []string{"values.global.proxy.excludeInboundPorts=99999"}, `values.global.proxy.excludeInboundPorts: "99999" is not a port`},
		{"bad bool", []string{"values.global.mtls.enabled=maybe"}, `values.global.mtls.enabled: got "maybe", want true or false`},
		{"bad int", []string{"values.global.proxy.concurrency=two"}, `values.global.proxy.concurrency: got "two", want a whole number`},
		{"bad enum", []string{"values.global.proxy.autoInject=sometimes"}, `values.global.proxy.autoInject: got "sometimes", want one of enabled, disabled`},
		{"cni", []string{"components.cni.enabled=true"}, "components.cni.enabled: Trellis has no CNI plugin"},
		{"spec prefix", []string{"spec.profile=demo"}, "drop the \"spec.\" prefix"},
		{"no equals", []string{"profile"}, "want path=value"},
		{"quantity", []string{"values.pilot.resources.requests.cpu=lots"}, `values.pilot.resources.requests.cpu: got "lots", want a Kubernetes quantity`},
		{"native sidecars", []string{"values.pilot.env.ENABLE_NATIVE_SIDECARS=sometimes"}, `values.pilot.env.ENABLE_NATIVE_SIDECARS: got "sometimes", want one of auto, true, false`},
		{"drain duration", []string{"meshConfig.defaultConfig.terminationDrainDuration=500ms"}, `meshConfig.defaultConfig.terminationDrainDuration: got "500ms", want seconds with an s suffix`},
		{"east-west gateway without a network", []string{"components.ingressGateways[1].name=istio-eastwestgateway", "components.ingressGateways[1].enabled=true"}, "components.ingressGateways[1]: istio-eastwestgateway is the gateway of this cluster's network; set values.global.network"},
		{"east-west gateway as egress", []string{"components.egressGateways[1].name=istio-eastwestgateway"}, "components.egressGateways[1].name: an east-west gateway receives other networks' traffic: list it under components.ingressGateways"},
		{"cluster name", []string{"values.global.multiCluster.clusterName=Cluster_1"}, `values.global.multiCluster.clusterName: got "Cluster_1", want lower-case letters`},
		{"network", []string{"values.global.network=net 1"}, `values.global.network: got "net 1", want letters, digits`},
		{"hold", []string{"meshConfig.defaultConfig.holdApplicationUntilProxyStarts=later"}, `meshConfig.defaultConfig.holdApplicationUntilProxyStarts: got "later", want true or false`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(Options{Set: c.set})
			if err == nil {
				t.Fatalf("got no error, want one containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("got error %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestCRDs(t *testing.T) {
	crds := CRDs()
	byName := map[string]int{}
	for _, c := range crds {
		byName[c.Name] = 0
		stored := 0
		for _, v := range c.Spec.Versions {
			if v.Storage {
				stored++
			}
			if !v.Served {
				t.Errorf("%s %s: not served", c.Name, v.Name)
			}
		}
		if stored != 1 {
			t.Errorf("%s: got %d storage versions, want 1", c.Name, stored)
		}
	}
	for _, want := range []string{"virtualservices.networking.istio.io", "destinationrules.networking.istio.io", "gateways.networking.istio.io", "serviceentries.networking.istio.io", "workloadentries.networking.istio.io", "workloadgroups.networking.istio.io", "sidecars.networking.istio.io", "peerauthentications.security.istio.io", "authorizationpolicies.security.istio.io", "requestauthentications.security.istio.io"} {
		if _, ok := byName[want]; !ok {
			t.Errorf("got no CRD %s", want)
		}
	}
}

func mustLoad(t *testing.T, set ...string) *Settings {
	t.Helper()
	s, err := Load(Options{Set: set})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestManifestRemoteInjection: the remote profile with
// values.global.remotePilotAddress (golden manifest-remote-injection.yaml)
// installs the injection webhook calling the primary's trellisd at
// https://HOST:15017/inject/cluster/CLUSTER/net/NETWORK; injectionURL and
// injectionPath replace the two halves; a URL that is not https is
// refused naming the field.
func TestManifestRemoteInjection(t *testing.T) {
	s := mustLoad(t, "profile=remote", "values.global.multiCluster.clusterName=cluster2", "values.global.network=network1",
		"values.global.remotePilotAddress=10.0.0.5:15010")
	comps, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	y, err := YAML(comps)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "manifest-remote-injection.yaml", y)
	if got, want := RemoteInjectionURL(s), "https://10.0.0.5:15017/inject/cluster/cluster2/net/network1"; got != want {
		t.Errorf("derived from remotePilotAddress: got %s, want %s", got, want)
	}
	s = mustLoad(t, "profile=remote", "values.global.multiCluster.clusterName=cluster2",
		"values.istiodRemote.injectionURL=https://trellisd.example.com:443/", "values.istiodRemote.injectionPath=/inject/cluster/c2")
	if got, want := RemoteInjectionURL(s), "https://trellisd.example.com:443/inject/cluster/c2"; got != want {
		t.Errorf("injectionURL and injectionPath: got %s, want %s", got, want)
	}
	if _, err := Load(Options{Set: []string{"profile=remote", "values.istiodRemote.injectionURL=http://10.0.0.5:15017"}}); err == nil ||
		!strings.Contains(err.Error(), "values.istiodRemote.injectionURL") || !strings.Contains(err.Error(), "https://") {
		t.Errorf("http injectionURL: got %v, want refused naming values.istiodRemote.injectionURL", err)
	}
	if comps, _ := Render(mustLoad(t, "profile=remote")); strings.Contains(string(must(YAML(comps))), "MutatingWebhookConfiguration") {
		t.Error("remote profile without an address: want no injection webhook")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
