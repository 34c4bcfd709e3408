package kube

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/trellis-mesh/trellis/internal/config"
	configkube "github.com/trellis-mesh/trellis/internal/config/kube"
	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	registrykube "github.com/trellis-mesh/trellis/internal/registry/kube"
	"github.com/trellis-mesh/trellis/internal/webhook"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

const scenario = "../../../../shared/scenarios/bill-service"

// kubectlApply server-side applies every document of a YAML file, as
// `kubectl apply --server-side -f` does.
func kubectlApply(t *testing.T, ctx context.Context, c *kube.Clients, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("scenario file missing (%v); the shared scenarios sit beside the repository", err)
	}
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		gvk := u.GroupVersionKind()
		mapping, err := c.Mapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, gvk, err)
		}
		data, _ := u.MarshalJSON()
		force := true
		ri := c.Dynamic.Resource(mapping.Resource)
		var rerr error
		if u.GetNamespace() != "" {
			_, rerr = ri.Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "kubectl", Force: &force})
		} else {
			_, rerr = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "kubectl", Force: &force})
		}
		if rerr != nil {
			t.Fatalf("apply %s %s from %s: %v", gvk.Kind, u.GetName(), filepath.Base(path), rerr)
		}
	}
}

// runPods plays the Deployment and ReplicaSet controllers and the kubelet:
// one Pod per Deployment (created through the API server, so the
// injection webhook runs), given an IP and marked Ready.
func runPods(t *testing.T, ctx context.Context, c *kube.Clients, ns string, firstIP byte) map[string]*corev1.Pod {
	t.Helper()
	deps, err := c.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*corev1.Pod{}
	for i, d := range deps.Items {
		pod := podFor(d)
		var got *corev1.Pod
		// Webhook configuration changes reach the API server's admission
		// chain asynchronously: retry until the pod comes back injected.
		deadline := time.Now().Add(20 * time.Second)
		for try := 0; ; try++ {
			p := pod.DeepCopy()
			p.Name = pod.Name + string(rune('a'+try))
			got, err = c.Kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create pod for %s: %v", d.Name, err)
			}
			if len(got.Spec.Containers) > 1 || time.Now().After(deadline) {
				break
			}
			_ = c.Kube.CoreV1().Pods(ns).Delete(ctx, got.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			time.Sleep(200 * time.Millisecond)
		}
		ip := net.IPv4(10, 1, 0, firstIP+byte(i)).String()
		got.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		got, err = c.Kube.CoreV1().Pods(ns).UpdateStatus(ctx, got, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("pod status: %v", err)
		}
		out[d.Name] = got
	}
	return out
}

func podFor(d appsv1.Deployment) *corev1.Pod {
	hash := "5c9f7"
	labels := map[string]string{"pod-template-hash": hash}
	for k, v := range d.Spec.Template.Labels {
		labels[k] = v
	}
	ctrl := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash + "-", Namespace: d.Namespace, Labels: labels, Annotations: d.Spec.Template.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: d.Name + "-" + hash, UID: types.UID("rs-" + d.Name), Controller: &ctrl}},
		},
		Spec: *d.Spec.Template.Spec.DeepCopy(),
	}
}

// publishEndpoints plays the EndpointSlice controller for one Service.
func publishEndpoints(t *testing.T, ctx context.Context, c *kube.Clients, ns, svcName string, pods map[string]*corev1.Pod) {
	t.Helper()
	svc, err := c.Kube.CoreV1().Services(ns).Get(ctx, svcName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svcName + "-x7k2p", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range svc.Spec.Ports {
		name, port, proto := p.Name, int32(p.TargetPort.IntValue()), p.Protocol
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto})
	}
	for _, p := range pods {
		match := true
		for k, v := range svc.Spec.Selector {
			if p.Labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		ready := true
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: p.Name, Namespace: ns},
		})
	}
	if _, err := c.Kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestBillServiceOnKubernetes(t *testing.T) {
	env := kubetest.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := env.Clients

	// trellis install --set profile=demo
	s, err := install.Load(install.Options{Set: []string{"profile=demo"}})
	if err != nil {
		t.Fatal(err)
	}
	comps, err := install.Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, c, comps, install.ApplyOptions{}); err != nil {
		t.Fatalf("install: %v", err)
	}

	// trellisd's webhook server, on loopback, with the certificate install
	// generated; the installed webhook configurations are pointed at it by
	// URL (the API server cannot reach a Service without a cluster network).
	sec, err := c.Kube.CoreV1().Secrets("trellis-system").Get(ctx, install.WebhookSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The installed certificate names trellisd.trellis-system.svc and
	// 127.0.0.1.
	certs := &webhook.Certs{CA: sec.Data[webhook.KeyCA], Cert: sec.Data[webhook.KeyCert], Key: sec.Data[webhook.KeyKey]}
	tlsCfg, err := certs.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	var injCfg inject.Config
	cm, err := c.Kube.CoreV1().ConfigMaps("trellis-system").Get(ctx, install.InjectorConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config"]), &injCfg); err != nil {
		t.Fatalf("injector config map: %v", err)
	}
	reg := registrykube.New(c.Kube, registrykube.Options{Coalesce: 10 * time.Millisecond})
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	inj := webhook.NewInjector(injCfg)
	inj.NamespaceLabels = reg.NamespaceLabels
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go (&webhook.Server{Inject: inj, Validate: true}).Serve(ctx, l, tlsCfg)
	url := "https://" + l.Addr().String()
	pointWebhooks(t, ctx, c, url)

	// kubectl apply -f workloads.yaml; kubectl label namespace istio-demo istio-injection=enabled
	kubectlApply(t, ctx, c, filepath.Join(scenario, "workloads.yaml"))
	label := []byte(`{"metadata":{"labels":{"istio-injection":"enabled"}}}`)
	if _, err := c.Kube.CoreV1().Namespaces().Patch(ctx, "istio-demo", types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "namespace label in the registry's informer", func() bool {
		l, err := reg.NamespaceLabels(ctx, "istio-demo")
		return err == nil && l["istio-injection"] == "enabled"
	})
	pods := runPods(t, ctx, c, "istio-demo", 10)
	for name, p := range pods {
		if len(p.Spec.Containers) != 2 || p.Spec.Containers[1].Name != inject.ProxyContainerName || len(p.Spec.InitContainers) != 1 {
			t.Fatalf("pod of %s: got containers %d, init %d; want the sidecar injected by the API server's webhook call", name, len(p.Spec.Containers), len(p.Spec.InitContainers))
		}
	}
	publishEndpoints(t, ctx, c, "istio-demo", "bill-service", pods)

	// kubectl apply -f destination-rule.yaml -f virtual-service.yaml
	store := config.NewStore()
	src := configkube.New(c.Dynamic, c.Discovery, store, configkube.Options{Events: c.Kube, Coalesce: 10 * time.Millisecond})
	if err := src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	kubectlApply(t, ctx, c, filepath.Join(scenario, "destination-rule.yaml"))
	kubectlApply(t, ctx, c, filepath.Join(scenario, "virtual-service.yaml"))

	const host = "bill-service.istio-demo.svc.cluster.local"
	waitFor(t, "config and endpoints", func() bool {
		cs := store.Snapshot()
		return cs.Get(config.Key{Kind: config.KindVirtualService, Namespace: "istio-demo", Name: "vs-bill-service"}) != nil &&
			cs.Get(config.Key{Kind: config.KindDestinationRule, Namespace: "istio-demo", Name: "dest-bill-service"}) != nil &&
			len(reg.Snapshot().Endpoints[host]) == 2
	})

	// The front-tomcat proxy's configuration.
	front := pods["front-tomcat-v1"]
	proxy := &translate.Proxy{
		ID:   "sidecar~" + front.Status.PodIP + "~" + front.Name + ".istio-demo~istio-demo.svc.cluster.local",
		Type: translate.SidecarProxy, IPs: []string{front.Status.PodIP}, Name: front.Name, Namespace: "istio-demo",
		Labels: front.Labels, ServiceAccount: "default", Cluster: "Kubernetes",
	}
	out := translate.Translate(translate.Input{Proxy: proxy, Config: store.Snapshot(), Registry: reg.Snapshot(), Mesh: translate.DefaultMesh()})
	v1 := translate.OutboundClusterName(9999, "v1", host)
	v2 := translate.OutboundClusterName(9999, "v2", host)
	weights := routeWeights(t, out, "9999", host)
	if weights[v1] != 90 || weights[v2] != 10 || len(weights) != 2 {
		t.Errorf("route 9999 for %s: got weights %v, want %s=90 %s=10", host, weights, v1, v2)
	}
	want := map[string]string{v1: pods["bill-service-v1"].Status.PodIP, v2: pods["bill-service-v2"].Status.PodIP}
	for cluster, ip := range want {
		got := endpointsOf(out, cluster)
		if len(got) != 1 || got[0] != ip+":80" {
			t.Errorf("EDS %s: got %v, want [%s:80] (the pod labelled for the subset)", cluster, got, ip)
		}
	}

	// An invalid VirtualService is refused by the API server with the field error.
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
		"metadata": map[string]any{"name": "vs-bad", "namespace": "istio-demo"},
		"spec": map[string]any{"hosts": []any{"bill-service"}, "http": []any{map[string]any{"route": []any{
			map[string]any{"destination": map[string]any{"host": "bill-service", "subset": "v1"}, "weight": 90},
			map[string]any{"destination": map[string]any{"host": "bill-service", "subset": "v2"}, "weight": -10}}}}},
	}}
	vsr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}
	_, err = c.Dynamic.Resource(vsr).Namespace("istio-demo").Create(ctx, bad, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "spec.http[0].route[1].weight") {
		t.Errorf("invalid VirtualService: got %v, want a refusal naming spec.http[0].route[1].weight", err)
	}

	// Deleting the VirtualService returns to the even split: no weights.
	if err := c.Dynamic.Resource(vsr).Namespace("istio-demo").Delete(ctx, "vs-bill-service", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "VirtualService removal", func() bool {
		return store.Snapshot().Get(config.Key{Kind: config.KindVirtualService, Namespace: "istio-demo", Name: "vs-bill-service"}) == nil
	})
	out = translate.Translate(translate.Input{Proxy: proxy, Config: store.Snapshot(), Registry: reg.Snapshot(), Mesh: translate.DefaultMesh()})
	if w := routeWeights(t, out, "9999", host); len(w) != 0 {
		t.Errorf("after deleting the VirtualService: got weighted clusters %v, want a plain route", w)
	}
	all := endpointsOf(out, translate.OutboundClusterName(9999, "", host))
	if len(all) != 2 {
		t.Errorf("EDS for the whole service: got %v, want both pods", all)
	}

	// trellis uninstall --purge removes what install created.
	if err := install.Uninstall(ctx, c, comps, install.UninstallOptions{Purge: true}); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	for _, o := range install.Objects(comps) {
		if o.GetKind() == "Namespace" {
			continue // never finishes terminating without a controller-manager
		}
		gvk := o.GroupVersionKind()
		m, err := c.Mapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			continue // the CRD kinds themselves are gone
		}
		ri := c.Dynamic.Resource(m.Resource)
		// CRDs finish deleting once the API server has removed their objects.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var gerr error
			if o.GetNamespace() != "" {
				_, gerr = ri.Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
			} else {
				_, gerr = ri.Get(ctx, o.GetName(), metav1.GetOptions{})
			}
			if apierrors.IsNotFound(gerr) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s %s after uninstall: got %v, want not found", gvk.Kind, o.GetName(), gerr)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// pointWebhooks rewrites the installed webhook configurations to call url.
func pointWebhooks(t *testing.T, ctx context.Context, c *kube.Clients, url string) {
	t.Helper()
	mwh, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.InjectorWebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range mwh.Webhooks {
		u := url + "/inject"
		mwh.Webhooks[i].ClientConfig.Service, mwh.Webhooks[i].ClientConfig.URL = nil, &u
	}
	if _, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, mwh, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	vwh, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, install.ValidatorWebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range vwh.Webhooks {
		u := url + "/validate"
		vwh.Webhooks[i].ClientConfig.Service, vwh.Webhooks[i].ClientConfig.URL = nil, &u
	}
	if _, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, vwh, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// routeWeights finds the route configuration and the service's virtual
// host and returns its first route's weighted clusters.
func routeWeights(t *testing.T, out *translate.Output, routeName, host string) map[string]uint32 {
	t.Helper()
	for _, rc := range out.Routes {
		if rc.Name != routeName {
			continue
		}
		for _, vh := range rc.VirtualHosts {
			if !containsDomain(vh.Domains, host) {
				continue
			}
			if len(vh.Routes) == 0 {
				t.Fatalf("virtual host %s has no routes", vh.Name)
			}
			ra, ok := vh.Routes[0].Action.(*routev3.Route_Route)
			if !ok {
				t.Fatalf("virtual host %s: first route is %T, want a route action", vh.Name, vh.Routes[0].Action)
			}
			w := map[string]uint32{}
			if wc := ra.Route.GetWeightedClusters(); wc != nil {
				for _, c := range wc.Clusters {
					w[c.Name] = c.GetWeight().GetValue()
				}
			}
			return w
		}
	}
	t.Fatalf("no route configuration %q with a virtual host for %s", routeName, host)
	return nil
}

func containsDomain(ds []string, host string) bool {
	for _, d := range ds {
		if d == host {
			return true
		}
	}
	return false
}

func endpointsOf(out *translate.Output, cluster string) []string {
	var eps []string
	for _, cla := range out.Endpoints {
		if cla.ClusterName != cluster {
			continue
		}
		for _, le := range cla.Endpoints {
			for _, lb := range le.LbEndpoints {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				eps = append(eps, net.JoinHostPort(sa.GetAddress(), itoa(sa.GetPortValue())))
			}
		}
	}
	return eps
}

func itoa(n uint32) string { return strconvU(n) }
