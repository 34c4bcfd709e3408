// Command kubescale measures the Kubernetes sources at scale: it starts a
// real kube-apiserver and etcd (internal/kube/kubetest), creates N Services
// each with an EndpointSlice of M ready endpoints backed by M Pods, then
// measures how long the registry (internal/registry/kube) takes to sync and
// build its snapshot, the heap it holds, how long an endpoint change takes
// to reach a new snapshot, and the translation of one sidecar over it. For
// comparison it also syncs plain, untransformed informers on the same
// objects.
//
//	go run ./bench/kubescale -services 1000 -endpoints 10 [-write BENCHMARKS.md]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/kube/controlplane"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	registrykube "github.com/trellis-mesh/trellis/internal/registry/kube"
	"github.com/trellis-mesh/trellis/internal/trellisd"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

func main() {
	services := flag.Int("services", 1000, "number of Services")
	perSvc := flag.Int("endpoints", 10, "endpoints (and Pods) per Service")
	write := flag.String("write", "", "append the results under \"## Kubernetes registry scale\" in this Markdown file")
	flag.Parse()
	if err := run(*services, *perSvc, *write); err != nil {
		log.Fatal(err)
	}
}

func heap() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func run(nSvc, perSvc int, write string) error {
	env, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	ctx := context.Background()
	kc := env.Clients.Kube

	t0 := time.Now()
	if err := populate(ctx, kc, nSvc, perSvc); err != nil {
		return err
	}
	populateTime := time.Since(t0)
	log.Printf("created %d services, %d pods, %d endpoint slices in %s", nSvc, nSvc*perSvc, nSvc, populateTime)

	// Plain informers, the objects as client-go decodes them.
	base := heap()
	pctx, pcancel := context.WithCancel(ctx)
	f := informers.NewSharedInformerFactory(kc, 0)
	infs := []cache.SharedIndexInformer{f.Core().V1().Services().Informer(), f.Discovery().V1().EndpointSlices().Informer(), f.Core().V1().Pods().Informer(), f.Core().V1().Namespaces().Informer(), f.Core().V1().Nodes().Informer()}
	t1 := time.Now()
	f.Start(pctx.Done())
	for _, inf := range infs {
		cache.WaitForCacheSync(pctx.Done(), inf.HasSynced)
	}
	plainSync := time.Since(t1)
	plainHeap := heap() - base
	pcancel()
	f.Shutdown()
	infs, f = nil, nil

	// The Trellis registry: transformed informers plus the snapshot.
	base = heap()
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	reg := registrykube.New(kc, registrykube.Options{})
	t2 := time.Now()
	if err := reg.Start(rctx); err != nil {
		return err
	}
	regSync := time.Since(t2)
	regHeap := heap() - base
	snap := reg.Snapshot()
	nEps := 0
	for _, e := range snap.Endpoints {
		nEps += len(e)
	}

	// Propagation: change one endpoint's readiness, wait for the snapshot.
	var lat []time.Duration
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("svc-%04d", i*7)
		es, err := kc.DiscoveryV1().EndpointSlices("scale").Get(ctx, name+"-abcde", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready := false
		es.Endpoints[0].Conditions.Ready = &ready
		before := reg.Builds()
		t := time.Now()
		if _, err := kc.DiscoveryV1().EndpointSlices("scale").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			return err
		}
		host := name + ".scale.svc.cluster.local"
		for {
			if reg.Builds() > before {
				eps := reg.Snapshot().Endpoints[host]
				if len(eps) > 0 && !allHealthy(eps) {
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(t))
	}

	// One sidecar's full translation over this registry.
	proxy := &translate.Proxy{ID: "sidecar~10.200.0.1~client.scale~scale.svc.cluster.local", Type: translate.SidecarProxy, IPs: []string{"10.200.0.1"}, Name: "client", Namespace: "scale", Labels: map[string]string{"app": "client"}}
	in := translate.Input{Proxy: proxy, Config: config.NewSnapshot(nil), Registry: reg.Snapshot(), Mesh: translate.DefaultMesh()}
	t3 := time.Now()
	out := translate.Translate(in)
	trTime := time.Since(t3)

	rcancel()

	// trellisd as it runs in the cluster: controlplane.Wire (registry,
	// CRD config, credentials) then trellisd.Run until its first state is
	// built and listeners are bound.
	base = heap()
	tctx, tcancel := context.WithCancel(ctx)
	defer tcancel()
	t4 := time.Now()
	var topts trellisd.Options
	if _, err := controlplane.Wire(tctx, controlplane.Options{Clients: env.Clients}, &topts); err != nil {
		return err
	}
	topts.XDSAddress, topts.Logf = "127.0.0.1:0", func(string, ...any) {}
	ready := make(chan struct{})
	topts.Ready = func(*trellisd.Server) { close(ready) }
	runErr := make(chan error, 1)
	go func() { runErr <- trellisd.Run(tctx, topts) }()
	select {
	case <-ready:
	case err := <-runErr:
		return err
	}
	tdSync := time.Since(t4)
	tdHeap := heap() - base

	var b bytes.Buffer
	fmt.Fprintf(&b, "\nMeasured %s with `go run ./bench/kubescale -services %d -endpoints %d` (real kube-apiserver %s + etcd %s on 127.0.0.1, in-process sources):\n\n",
		time.Now().UTC().Format("2006-01-02"), nSvc, perSvc, kubetest.KubeVersion, kubetest.EtcdVersion)
	fmt.Fprintf(&b, "| what | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| objects in the API server | %d Services, %d EndpointSlices, %d Pods (%d endpoints) |\n", nSvc, nSvc, nSvc*perSvc, nSvc*perSvc)
	fmt.Fprintf(&b, "| registry/kube initial sync (list + watch + first snapshot) | %s |\n", regSync.Round(time.Millisecond))
	fmt.Fprintf(&b, "| snapshot | %d services, %d endpoints (one per pod and service port) |\n", len(snap.Services), nEps)
	fmt.Fprintf(&b, "| heap held by registry/kube (stripped structs + snapshot) | %.1f MiB |\n", float64(regHeap)/(1<<20))
	fmt.Fprintf(&b, "| heap held by plain client-go informers on the same objects | %.1f MiB (sync %s) |\n", float64(plainHeap)/(1<<20), plainSync.Round(time.Millisecond))
	fmt.Fprintf(&b, "| one EndpointSlice update -> new snapshot (5 runs) | %s |\n", durations(lat))
	fmt.Fprintf(&b, "| trellisd start with the Kubernetes sources until ready (Wire + Run: sync, first state, listeners) | %s |\n", tdSync.Round(time.Millisecond))
	fmt.Fprintf(&b, "| heap held by trellisd after that (sources + first state, no proxies connected) | %.1f MiB |\n", float64(tdHeap)/(1<<20))
	fmt.Fprintf(&b, "| translate one sidecar over the registry | %s (%d clusters, %d listeners) |\n", trTime.Round(time.Millisecond), len(out.Clusters), len(out.Listeners))
	fmt.Print(b.String())
	if write != "" {
		return appendSection(write, "## Kubernetes registry scale", b.String())
	}
	return nil
}

func allHealthy(eps []*registryEndpoint) bool {
	for _, e := range eps {
		if !e.Healthy {
			return false
		}
	}
	return true
}

func durations(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(s, ", ")
}

func populate(ctx context.Context, kc kubernetes.Interface, nSvc, perSvc int) error {
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "scale"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	work := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := oneService(ctx, kc, i, perSvc); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < nSvc; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func oneService(ctx context.Context, kc kubernetes.Interface, i, perSvc int) error {
	name := fmt.Sprintf("svc-%04d", i)
	labels := map[string]string{"app": name, "version": "v1"}
	if _, err := kc.CoreV1().Services("scale").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}, {Name: "grpc", Port: 9090}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}, {Name: ptr("grpc"), Port: ptr(int32(9090))}},
	}
	for j := 0; j < perSvc; j++ {
		pod := fmt.Sprintf("%s-7d9f8-%03d", name, j)
		if _, err := kc.CoreV1().Pods("scale").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod, Labels: map[string]string{"app": name, "version": "v1", "pod-template-hash": "7d9f8"}},
			Spec:       corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}}},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
		ip := fmt.Sprintf("10.%d.%d.%d", 100+i/250, i%250, j+1)
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod, Namespace: "scale"}})
	}
	_, err := kc.DiscoveryV1().EndpointSlices("scale").Create(ctx, es, metav1.CreateOptions{})
	return err
}

func ptr[T any](v T) *T { return &v }

// appendSection inserts text at the end of the named section (before the
// next "## " heading), replacing what a previous run wrote there.
func appendSection(path, heading, text string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, heading)
	if i < 0 {
		s = strings.TrimRight(s, "\n") + "\n\n" + heading + "\n" + text
		return os.WriteFile(path, []byte(s), 0o644)
	}
	start := i + len(heading)
	end := len(s)
	if j := strings.Index(s[start:], "\n## "); j >= 0 {
		end = start + j + 1
	}
	s = s[:start] + "\n" + text + "\n" + s[end:]
	return os.WriteFile(path, []byte(s), 0o644)
}
