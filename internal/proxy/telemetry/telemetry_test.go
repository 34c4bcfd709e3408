package telemetry

import (
	"bytes"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/structpb"
)

// istioLabels is Istio's label set for istio_requests_total (ISTIO-FACTS.md).
var istioLabels = []string{"reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app",
	"source_version", "source_canonical_service", "source_canonical_revision", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
	"destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
	"destination_canonical_service", "destination_canonical_revision", "destination_cluster", "request_protocol",
	"response_flags", "connection_security_policy", "response_code", "grpc_response_status"}

func parse(t testing.TB, r *Recorder) map[string]*dto.MetricFamily {
	t.Helper()
	var b bytes.Buffer
	if err := r.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&b)
	if err != nil {
		t.Fatalf("got invalid exposition: %v", err)
	}
	return fams
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestRequestMetrics(t *testing.T) {
	r := NewRecorder(nil)
	front := r.Interner.Peer(Peer{Workload: "frontend", Namespace: "default", App: "frontend", Version: "v1", CanonicalService: "frontend", CanonicalRevision: "v1", Cluster: "Kubernetes"})
	bill := r.Interner.Peer(Peer{Workload: "bill-service-v2", Namespace: "default", App: "bill-service", Version: "v2", CanonicalService: "bill-service", CanonicalRevision: "v2", Cluster: "Kubernetes"})
	svc := r.Interner.Service(Service{Host: "bill-service.default.svc.cluster.local", Name: "bill-service", Namespace: "default"})
	out := &Key{Reporter: Source, Source: front, Destination: bill, Service: svc, Protocol: "http", Security: "unknown"}
	in := &Key{Reporter: Destination, Source: front, Destination: bill, Service: svc, Protocol: "http", Security: "none"}
	for i := 0; i < 3; i++ {
		r.Request(out, 200, -1, "-", 12, 100, 2000)
	}
	r.Request(out, 503, -1, "UH", 1, 100, 19)
	r.Request(in, 200, -1, "", 10, 100, 2000)
	fams := parse(t, r)
	rq := fams["istio_requests_total"]
	if rq == nil || len(rq.GetMetric()) != 3 {
		t.Fatalf("got %v, want 3 series", rq)
	}
	var found bool
	for _, m := range rq.GetMetric() {
		l := labelMap(m)
		var names []string
		for n := range l {
			names = append(names, n)
		}
		sort.Strings(names)
		want := append([]string(nil), istioLabels...)
		sort.Strings(want)
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Fatalf("got labels %v, want Istio's %v", names, want)
		}
		if l["reporter"] == "source" && l["response_code"] == "200" {
			found = true
			if m.GetCounter().GetValue() != 3 || l["destination_version"] != "v2" || l["source_workload"] != "frontend" ||
				l["destination_service"] != "bill-service.default.svc.cluster.local" || l["grpc_response_status"] != "" ||
				l["response_flags"] != "-" || l["source_principal"] != "unknown" {
				t.Errorf("got %v = %v, want 3 requests frontend -> bill-service v2", l, m.GetCounter().GetValue())
			}
		}
		if l["response_code"] == "503" && l["response_flags"] != "UH" {
			t.Errorf("got flags %q, want UH", l["response_flags"])
		}
	}
	if !found {
		t.Errorf("got no source/200 series")
	}
	d := fams["istio_request_duration_milliseconds"]
	if d == nil || d.GetType() != dto.MetricType_HISTOGRAM || len(d.GetMetric()) != 3 {
		t.Fatalf("got %v, want the duration histogram with 3 series", d)
	}
	for _, name := range []string{"istio_request_bytes", "istio_response_bytes"} {
		if fams[name] == nil {
			t.Errorf("got no %s", name)
		}
	}
}

func TestGRPCAndTCP(t *testing.T) {
	r := NewRecorder(nil)
	k := &Key{Reporter: Source, Protocol: "grpc"}
	r.Request(k, 200, 14, "-", 3, 10, 10)
	r.GRPCMessages(k, 200, 14, "-", 2, 5)
	tk := &Key{Reporter: Destination, Protocol: "tcp", Security: "none"}
	c := r.TCPConn(tk)
	c.Opened()
	c.Bytes(60, 150)
	c.Closed("-", 40, 50)
	failed := r.TCPConn(&Key{Reporter: Source, Protocol: "tcp", Security: "unknown"})
	failed.Closed("UF", 0, 0)
	fams := parse(t, r)
	g := labelMap(fams["istio_requests_total"].GetMetric()[0])
	if g["grpc_response_status"] != "14" || g["source_workload"] != "unknown" || g["request_protocol"] != "grpc" || g["source_canonical_revision"] != "latest" {
		t.Errorf("got %v, want grpc status 14 and unknown source (canonical revision latest)", g)
	}
	wants := map[string]float64{
		"istio_request_messages_total":       2,
		"istio_response_messages_total":      5,
		"istio_tcp_connections_opened_total": 1,
		"istio_tcp_connections_closed_total": 1,
		"istio_tcp_received_bytes_total":     100,
		"istio_tcp_sent_bytes_total":         200,
	}
	for name, want := range wants {
		f := fams[name]
		var m *dto.Metric
		for _, x := range f.GetMetric() {
			if labelMap(x)["reporter"] == "destination" || !strings.Contains(name, "tcp") {
				m = x
			}
		}
		if m == nil || m.GetCounter().GetValue() != want {
			t.Errorf("%s: got %v, want %v", name, f, want)
			continue
		}
		if _, ok := labelMap(m)["response_code"]; ok != strings.Contains(name, "messages") {
			t.Errorf("%s: got response_code label %v, want it only on gRPC message metrics", name, ok)
		}
	}
	// The failed connection is opened and closed in one series, with its flags.
	for _, name := range []string{"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"} {
		var got []string
		for _, m := range fams[name].GetMetric() {
			l := labelMap(m)
			got = append(got, l["reporter"]+"/"+l["response_flags"]+"="+m.GetCounter().String())
		}
		sort.Strings(got)
		if len(got) != 2 || !strings.HasPrefix(got[1], "source/UF=") || !strings.HasSuffix(got[1], "value:1") {
			t.Errorf("%s: got %v, want destination/- and source/UF with 1 each", name, got)
		}
	}
}

func TestRequestDoesNotAllocate(t *testing.T) {
	r := NewRecorder(nil)
	k := &Key{Reporter: Source, Source: r.Interner.Peer(Peer{Workload: "a"}), Protocol: "http"}
	r.Request(k, 200, -1, "-", 1, 1, 1)
	if n := testing.AllocsPerRun(1000, func() { r.Request(k, 200, -1, "-", 1, 1, 1) }); n != 0 {
		t.Errorf("got %v allocations per request, want 0", n)
	}
	c := r.TCPConn(k)
	c.Opened()
	if n := testing.AllocsPerRun(1000, func() { c.Bytes(10, 20) }); n != 0 {
		t.Errorf("got %v allocations per TCP byte report, want 0", n)
	}
	r.GRPCMessages(k, 200, 0, "-", 1, 1)
	if n := testing.AllocsPerRun(1000, func() { r.GRPCMessages(k, 200, 0, "-", 1, 1) }); n != 0 {
		t.Errorf("got %v allocations per gRPC message report, want 0", n)
	}
}

func TestInternerDedups(t *testing.T) {
	var in Interner
	a := in.Peer(Peer{Workload: "w", Namespace: "n"})
	b := in.Peer(Peer{Workload: "w", Namespace: "n"})
	if a != b {
		t.Errorf("got two pointers for equal peers, want one")
	}
	if in.Service(Service{Host: "h"}) != in.Service(Service{Host: "h"}) {
		t.Errorf("got two pointers for equal services, want one")
	}
}

func TestPeerMetadataRoundTrip(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE": "default", "WORKLOAD_NAME": "canary-v2", "CLUSTER_ID": "Kubernetes",
		"LABELS": map[string]any{"app": "canary", "version": "v2"},
	})
	enc, err := EncodePeerMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := DecodePeerMetadata(enc)
	if err != nil {
		t.Fatal(err)
	}
	got := PeerFromMetadata(dec)
	want := Peer{Workload: "canary-v2", Namespace: "default", App: "canary", Version: "v2", CanonicalService: "canary", CanonicalRevision: "v2", Cluster: "Kubernetes"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := DecodePeerMetadata("!!not base64"); err == nil {
		t.Errorf("got nil, want an error for bad base64")
	}
}

func BenchmarkRequest(b *testing.B) {
	r := NewRecorder(nil)
	k := &Key{Reporter: Source, Source: r.Interner.Peer(Peer{Workload: "a"}), Protocol: "http"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Request(k, 200, -1, "-", 3, 100, 1000)
		}
	})
}

func FuzzDecodePeerMetadata(f *testing.F) {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "x", "LABELS": map[string]any{"app": "y"}})
	enc, _ := EncodePeerMetadata(md)
	f.Add(enc)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		md, err := DecodePeerMetadata(s)
		if err != nil {
			return
		}
		PeerFromMetadata(md)
	})
}
