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

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
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
	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube"
	"github.com/trellis-mesh/trellis/internal/kube/controlplane"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	"github.com/trellis-mesh/trellis/internal/trellisd"
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
		deadline := time.Now().Add(60 * time.Second)
		for try := 0; ; try++ {
			p := pod.DeepCopy()
			p.Name = pod.Name + string(rune('a'+try))
			got, err = c.Kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create pod for %s: %v", d.Name, err)
			}
			if got.Annotations[inject.AnnotationStatus] != "" || time.Now().After(deadline) {
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
	deadline := time.Now().Add(60 * time.Second)
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

	// trellisd with the Kubernetes sources (controlplane.Wire, as
	// `trellisd --kube` runs it), its webhook server on loopback using the
	// certificate install generated and the injector config install wrote.
	// The installed webhook configurations are pointed at it by URL (the API
	// server cannot reach a Service without a cluster network).
	dir := t.TempDir()
	sec, err := c.Kube.CoreV1().Secrets("trellis-system").Get(ctx, install.WebhookSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range sec.Data {
		os.WriteFile(filepath.Join(dir, k), v, 0o600)
	}
	cm, err := c.Kube.CoreV1().ConfigMaps("trellis-system").Get(ctx, install.InjectorConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "inject.json"), []byte(cm.Data["config"]), 0o644)
	var topts trellisd.Options
	wired, err := controlplane.Wire(ctx, controlplane.Options{Clients: c, InjectConfig: filepath.Join(dir, "inject.json"),
		WebhookCertDir: dir, WebhookAddress: "127.0.0.1:0"}, &topts)
	if err != nil {
		t.Fatalf("wire: %v", err)
	}
	reg, store := wired.Registry, topts.Store
	topts.XDSAddress = "127.0.0.1:0"
	topts.Debounce = 20 * time.Millisecond
	topts.Logf = t.Logf
	ready := make(chan *trellisd.Server, 1)
	topts.Ready = func(s *trellisd.Server) { ready <- s }
	runErr := make(chan error, 1)
	go func() { runErr <- trellisd.Run(ctx, topts) }()
	var td *trellisd.Server
	select {
	case td = <-ready:
	case err := <-runErr:
		t.Fatalf("trellisd: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("trellisd not ready")
	}
	pointWebhooks(t, ctx, c, "https://"+wired.WebhookAddr.String())

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
	// trellisd's injector asked the API server's discovery for its
	// version (1.32): native sidecars, after istio-init.
	for name, p := range pods {
		inits := p.Spec.InitContainers
		if len(inits) != 2 || inits[0].Name != inject.InitContainerName || inits[1].Name != inject.ProxyContainerName ||
			inits[1].RestartPolicy == nil || *inits[1].RestartPolicy != corev1.ContainerRestartPolicyAlways || len(p.Spec.Containers) != 1 {
			t.Fatalf("pod of %s: got init %d, containers %d; want istio-init and the istio-proxy native sidecar injected by the API server's webhook call", name, len(inits), len(p.Spec.Containers))
		}
	}
	publishEndpoints(t, ctx, c, "istio-demo", "bill-service", pods)

	// kubectl apply -f destination-rule.yaml -f virtual-service.yaml
	kubectlApply(t, ctx, c, filepath.Join(scenario, "destination-rule.yaml"))
	kubectlApply(t, ctx, c, filepath.Join(scenario, "virtual-service.yaml"))

	const host = "bill-service.istio-demo.svc.cluster.local"
	waitFor(t, "config and endpoints", func() bool {
		cs := store.Snapshot()
		return cs.Get(config.Key{Kind: config.KindVirtualService, Namespace: "istio-demo", Name: "vs-bill-service"}) != nil &&
			cs.Get(config.Key{Kind: config.KindDestinationRule, Namespace: "istio-demo", Name: "dest-bill-service"}) != nil &&
			len(reg.Snapshot().Endpoints[host]) == 2
	})

	// The front-tomcat proxy asks trellisd over ADS, as its sidecar would.
	front := pods["front-tomcat-v1"]
	node := sidecarNode(front)
	v1 := translate.OutboundClusterName(9999, "v1", host)
	v2 := translate.OutboundClusterName(9999, "v2", host)
	waitFor(t, "the 90/10 split served over xDS", func() bool {
		w := routeWeights(t, fetchRoutes(t, ctx, td.XDSAddr(), node, "9999"), host)
		return w[v1] == 90 && w[v2] == 10 && len(w) == 2
	})
	want := map[string]string{v1: pods["bill-service-v1"].Status.PodIP, v2: pods["bill-service-v2"].Status.PodIP}
	cla := fetchEndpoints(t, ctx, td.XDSAddr(), node, v1, v2)
	for cluster, ip := range want {
		got := endpointsOf(cla, cluster)
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

	// Deleting the VirtualService returns to the even split: one cluster
	// holding both pods.
	if err := c.Dynamic.Resource(vsr).Namespace("istio-demo").Delete(ctx, "vs-bill-service", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "plain route after deleting the VirtualService", func() bool {
		return len(routeWeights(t, fetchRoutes(t, ctx, td.XDSAddr(), node, "9999"), host)) == 0
	})
	all := translate.OutboundClusterName(9999, "", host)
	if got := endpointsOf(fetchEndpoints(t, ctx, td.XDSAddr(), node, all), all); len(got) != 2 {
		t.Errorf("EDS for the whole service: got %v, want both pods", got)
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
		deadline := time.Now().Add(60 * time.Second)
		for {
			var gerr error
			var got *unstructured.Unstructured
			if o.GetNamespace() != "" {
				got, gerr = ri.Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
			} else {
				got, gerr = ri.Get(ctx, o.GetName(), metav1.GetOptions{})
			}
			if apierrors.IsNotFound(gerr) || (gerr == nil && gvk.Kind == "CustomResourceDefinition" && got.GetDeletionTimestamp() != nil) {
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
func routeWeights(t *testing.T, routes []*routev3.RouteConfiguration, host string) map[string]uint32 {
	t.Helper()
	for _, rc := range routes {
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
	return map[string]uint32{"(no virtual host for " + host + ")": 0}
}

func containsDomain(ds []string, host string) bool {
	for _, d := range ds {
		if d == host {
			return true
		}
	}
	return false
}

func endpointsOf(clas []*endpointv3.ClusterLoadAssignment, cluster string) []string {
	var eps []string
	for _, cla := range clas {
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
