package multicluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

var binDir string

// TestMain builds trellis, trellisd and trellis-proxy once; the tests run them as
// processes.
func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "trellis-mc-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", d+"/", "./cmd/trellis", "./cmd/trellisd", "./cmd/trellis-proxy")
	cmd.Dir = filepath.Join(filepath.Dir(self), "../../..")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v: %s\n", err, out)
		os.Exit(1)
	}
	binDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

const (
	systemNS = "trellis-system"
	appNS    = "seed"
	host     = "worker.seed.svc.cluster.local"
)

// cluster is one running API server with Trellis installed and its
// trellisd.
type cluster struct {
	name string
	env  *kubetest.Env
	xds  string // trellisd's ADS address
}

// startCluster runs an API server, installs the minimal profile with the
// cluster's name and network as a user would (--set
// values.global.multiCluster.clusterName=NAME --set
// values.global.network=NET) and starts trellisd for it.
func startCluster(t *testing.T, ctx context.Context, name, network string) *cluster {
	t.Helper()
	return startClusterProfile(t, ctx, name, network, "minimal")
}

// startClusterProfile is startCluster with another profile; with
// "remote" no trellisd runs (primary-remote: another cluster's trellisd
// serves this one's proxies) and xds is empty.
func startClusterProfile(t *testing.T, ctx context.Context, name, network, profile string) *cluster {
	t.Helper()
	return startClusterWith(t, ctx, name, network, profile)
}

// startClusterWith is startClusterProfile with more install settings.
func startClusterWith(t *testing.T, ctx context.Context, name, network, profile string, set ...string) *cluster {
	t.Helper()
	return startClusterArgs(t, ctx, name, network, profile, set, "--ca-address", "")
}

// startClusterArgs is startClusterWith with more trellisd flags (the
// last of a repeated flag wins).
func startClusterArgs(t *testing.T, ctx context.Context, name, network, profile string, set []string, args ...string) *cluster {
	t.Helper()
	env, err := kubetest.Start()
	if err != nil {
		if strings.Contains(err.Error(), kubetest.ErrNoBinaries.Error()) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(env.Stop)
	s, err := install.Load(install.Options{Set: append([]string{"profile=" + profile,
		"values.global.multiCluster.clusterName=" + name, "values.global.network=" + network, "values.global.meshID=mesh1"}, set...)})
	if err != nil {
		t.Fatal(err)
	}
	comps, err := install.Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, env.Clients, comps, install.ApplyOptions{}); err != nil {
		t.Fatalf("install %s: %v", name, err)
	}
	ns, err := env.Clients.Kube.CoreV1().Namespaces().Get(ctx, systemNS, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.Labels[install.LabelNetwork]; got != network {
		t.Fatalf("%s: install labelled %s %s=%q, want %q", name, systemNS, install.LabelNetwork, got, network)
	}
	if profile == "remote" {
		return &cluster{name: name, env: env}
	}
	c := &cluster{name: name, env: env, xds: freeAddr(t)}
	logf, err := os.Create(filepath.Join(t.TempDir(), "trellisd-"+name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	// As the installed Deployment runs it (its --cluster-id from the same
	// value), with loopback ports and no webhooks, CA or dashboard.
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "trellisd"), append([]string{"--kube", "--kubeconfig", env.Kubeconfig,
		"--namespace", systemNS, "--cluster-id", install.ClusterName(s),
		"--xds-address", c.xds, "--debug-address", "", "--metrics-address", "", "--dashboard-address", "",
		"--debounce", "20ms"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("trellisd %s log:\n%s", name, b)
		}
	})
	waitFor(t, "trellisd "+name+" serving xDS", func() bool {
		conn, err := net.DialTimeout("tcp", c.xds, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	return c
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runWorker plays the Deployment controller, kubelet and EndpointSlice
// controller for seed 004's worker in one cluster: a Service and one ready
// Pod per version with the given IP.
func runWorker(t *testing.T, ctx context.Context, c *kube.Clients, locality string, pods map[string]string) {
	t.Helper()
	k := c.Kube
	if _, err := k.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "worker", Namespace: appNS},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "worker"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}}}}
	if _, err := k.CoreV1().Services(appNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "worker-abcde", Namespace: appNS, Labels: map[string]string{discoveryv1.LabelServiceName: "worker"}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	pname, pport, proto := "http", int32(8080), corev1.ProtocolTCP
	es.Ports = []discoveryv1.EndpointPort{{Name: &pname, Port: &pport, Protocol: &proto}}
	versions := make([]string, 0, len(pods))
	for v := range pods {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		ip := pods[v]
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "worker-" + v, Namespace: appNS, Labels: map[string]string{"app": "worker", "version": v, "istio-locality": locality}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "worker"}}}}
		got, err := k.CoreV1().Pods(appNS).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if _, err := k.CoreV1().Pods(appNS).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		ready := true
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: p.Name, Namespace: appNS}})
	}
	if _, err := k.DiscoveryV1().EndpointSlices(appNS).Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createRemoteSecret runs `trellis create-remote-secret --name NAME`
// against c, as a user would, and returns its output.
func createRemoteSecret(t *testing.T, c *cluster) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "trellis"), "create-remote-secret", "--name", c.name,
		"--kubeconfig", c.env.Kubeconfig, "--token-wait", "1s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("trellis create-remote-secret --name %s: %v\n%s", c.name, err, stderr.String())
	}
	return out
}

// kubectlApply server-side applies every document of a YAML stream, as
// `kubectl apply --server-side -f -` does.
func kubectlApply(t *testing.T, ctx context.Context, c *kube.Clients, b []byte) {
	t.Helper()
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		gvk := u.GroupVersionKind()
		mapping, err := c.Mapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatal(err)
		}
		if u.GetNamespace() == "" && mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			u.SetNamespace("default") // kubectl's default namespace
		}
		data, _ := u.MarshalJSON()
		force := true
		if _, err := c.Dynamic.Resource(mapping.Resource).Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: "kubectl", Force: &force}); err != nil {
			t.Fatalf("apply %s %s: %v", gvk.Kind, u.GetName(), err)
		}
	}
}

// node is the xDS node of a sidecar in cluster on network.
func node(clusterID, network string) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE": appNS, "LABELS": map[string]any{"app": "frontend"}, "INSTANCE_IPS": "10.9.0.1",
		"SERVICE_ACCOUNT": "default", "WORKLOAD_NAME": "frontend", "CLUSTER_ID": clusterID, "NETWORK": network, "MESH_ID": "mesh1",
	})
	return &corev3.Node{Id: "sidecar~10.9.0.1~frontend-1." + appNS + "~" + appNS + ".svc.cluster.local", Cluster: "frontend." + appNS, Metadata: md}
}

// endpoint is one EDS endpoint as the test reads it.
type endpoint struct{ addr, cluster, network, locality string }

// eds asks trellisd over one ADS stream for the worker's cluster and
// returns its endpoints, sorted by address.
func eds(t *testing.T, ctx context.Context, addr string, n *corev3.Node) []endpoint {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatalf("ads: %v", err)
	}
	name := translate.OutboundClusterName(8080, "", host)
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{name}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("ads recv: %v", err)
	}
	var out []endpoint
	for _, a := range resp.Resources {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := anypb.UnmarshalTo(a, cla, proto.UnmarshalOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, g := range cla.Endpoints {
			l := g.GetLocality()
			for _, e := range g.LbEndpoints {
				f := e.GetMetadata().GetFilterMetadata()["istio"].GetFields()
				out = append(out, endpoint{
					addr:     fmt.Sprintf("%s:%d", e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress(), e.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()),
					cluster:  f["cluster"].GetStringValue(),
					network:  f["network"].GetStringValue(),
					locality: l.GetRegion() + "/" + l.GetZone(),
				})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out
}

func addrs(eps []endpoint) string {
	var s []string
	for _, e := range eps {
		s = append(s, e.addr)
	}
	return strings.Join(s, ",")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
