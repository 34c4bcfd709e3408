package translate

import (
	"bytes"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry"
)

// TestDeterministic shuffles the order of config resources, registry
// services and endpoints and wants byte-identical output for every case.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, dir := range caseDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in := loadCase(t, dir)
			want := render(t, Translate(in))
			for i := 0; i < 5; i++ {
				rs := append([]*config.Resource(nil), in.Config.All()...)
				rng.Shuffle(len(rs), func(a, b int) { rs[a], rs[b] = rs[b], rs[a] })
				svcs := append([]*registry.Service(nil), in.Registry.Services...)
				rng.Shuffle(len(svcs), func(a, b int) { svcs[a], svcs[b] = svcs[b], svcs[a] })
				eps := map[string][]*registry.Endpoint{}
				for h, list := range in.Registry.Endpoints {
					cp := append([]*registry.Endpoint(nil), list...)
					rng.Shuffle(len(cp), func(a, b int) { cp[a], cp[b] = cp[b], cp[a] })
					eps[h] = cp
				}
				kube := append([]*config.KubeObject(nil), in.Config.KubeObjects()...)
				rng.Shuffle(len(kube), func(a, b int) { kube[a], kube[b] = kube[b], kube[a] })
				store := config.NewStore()
				store.SetAll("shuffled", rs, kube)
				shuffled := in
				shuffled.Config = store.Snapshot()
				shuffled.Registry = registry.NewSnapshot(svcs, eps)
				if got := render(t, Translate(shuffled)); !bytes.Equal(got, want) {
					t.Fatalf("shuffle %d: output changed:\n%s", i, firstDiff(string(got), string(want)))
				}
			}
		})
	}
}

// TestSplit checks Translate == Merge(Outbound, Inbound) + Endpoints for
// every case, and that Outbound only depends on the OutboundProxy: another
// proxy with the same key (different IP and name) gets equal Outbound
// output.
func TestSplit(t *testing.T) {
	for _, dir := range caseDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in := loadCase(t, dir)
			ob := Outbound(in)
			merged := Merge(ob, Inbound(in))
			merged.Endpoints = Endpoints(in, merged.EDSClusterNames())
			if got, want := render(t, merged), render(t, Translate(in)); !bytes.Equal(got, want) {
				t.Fatalf("Merge(Outbound, Inbound)+Endpoints differs from Translate:\n%s", firstDiff(string(got), string(want)))
			}
			twin := *in.Proxy
			twin.IPs = []string{"10.255.0.99"}
			twin.Name = "twin"
			twin.ID = "sidecar~10.255.0.99~twin." + twin.Namespace + "~" + twin.Namespace + ".svc.cluster.local"
			in2 := in
			in2.Proxy = &twin
			if NewOutboundProxy(in).Key() != NewOutboundProxy(in2).Key() {
				t.Fatalf("OutboundProxy key changed with IP/name only")
			}
			if got, want := render(t, Outbound(in2)), render(t, ob); !bytes.Equal(got, want) {
				t.Fatalf("same OutboundProxy key, different Outbound:\n%s", firstDiff(string(got), string(want)))
			}
		})
	}
}

// TestTranslateDoesNotAlterInput guards purity: the input's protos and
// registry values are unchanged by translation.
func TestTranslateDoesNotAlterInput(t *testing.T) {
	for _, dir := range caseDirs(t) {
		in := loadCase(t, dir)
		var before []proto.Message
		for _, r := range in.Config.All() {
			before = append(before, proto.Clone(r.Spec))
		}
		svcBefore := map[string]registry.Service{}
		for _, s := range in.Registry.Services {
			svcBefore[s.Hostname] = *s
		}
		Translate(in)
		for i, r := range in.Config.All() {
			if !proto.Equal(before[i], r.Spec) {
				t.Errorf("%s: %s changed during translation", dir, r.Key())
			}
		}
		for _, s := range in.Registry.Services {
			b := svcBefore[s.Hostname]
			if b.Hostname != s.Hostname || len(b.Ports) != len(s.Ports) || len(b.Addresses) != len(s.Addresses) {
				t.Errorf("%s: service %s changed during translation", dir, s.Hostname)
			}
		}
	}
}

// TestOutboundProxyLabels: labels are in the OutboundProxy exactly when a
// selector names their key (match-conditions has sourceLabels
// app=productpage and app=other).
func TestOutboundProxyLabels(t *testing.T) {
	in := loadCase(t, filepath.Join("testdata", "match-conditions"))
	with := func(labels map[string]string) Input {
		p := *in.Proxy
		p.Labels = labels
		c := in
		c.Proxy = &p
		return c
	}
	key := func(in Input) string { return NewOutboundProxy(in).Key() }
	pp1 := with(map[string]string{"app": "productpage", "version": "v1"})
	pp2 := with(map[string]string{"app": "productpage", "version": "v2"})
	other := with(map[string]string{"app": "other"})
	if got := NewOutboundProxy(pp1).Labels; len(got) != 1 || got["app"] != "productpage" {
		t.Errorf("labels: got %v, want only app=productpage (no selector names version)", got)
	}
	if key(pp1) != key(pp2) {
		t.Error("got different keys for labels no selector reads")
	}
	if got, want := render(t, Outbound(pp2)), render(t, Outbound(pp1)); !bytes.Equal(got, want) {
		t.Errorf("same key, different Outbound:\n%s", firstDiff(string(got), string(want)))
	}
	if key(pp1) == key(other) {
		t.Error("got the same key for app=productpage and app=other, which sourceLabels tell apart")
	}
	if bytes.Equal(render(t, Outbound(pp1)), render(t, Outbound(other))) {
		t.Error("sourceLabels did not change the routes")
	}
}

// TestTranslateConcurrent translates one Input from several goroutines (the
// server does this for many proxies); run with -race.
func TestTranslateConcurrent(t *testing.T) {
	in := loadCase(t, filepath.Join("testdata", "gateway-servers"))
	in2 := loadCase(t, filepath.Join("testdata", "match-conditions"))
	want, want2 := render(t, Translate(in)), render(t, Translate(in2))
	done := make(chan [2][]byte, 4)
	for i := 0; i < 4; i++ {
		go func() {
			done <- [2][]byte{render(t, Translate(in)), render(t, Translate(in2))}
		}()
	}
	for i := 0; i < 4; i++ {
		got := <-done
		if !bytes.Equal(got[0], want) || !bytes.Equal(got[1], want2) {
			t.Fatal("concurrent translation gave different output")
		}
	}
}

// TestTranslateEmpty: the zero Input is a sidecar in "default" with an empty
// mesh: the capture listeners and the fixed clusters, nothing else.
func TestTranslateEmpty(t *testing.T) {
	out := Translate(Input{})
	checkConsistent(t, out)
	var names []string
	for _, l := range out.Listeners {
		names = append(names, l.GetName())
	}
	for _, c := range out.Clusters {
		names = append(names, c.GetName())
	}
	got := strings.Join(names, ",")
	want := "virtualInbound,virtualOutbound,BlackHoleCluster,InboundPassthroughCluster,PassthroughCluster"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	for _, p := range []*Proxy{{Type: RouterProxy}, {Generator: GeneratorGRPC}} {
		checkConsistent(t, Translate(Input{Proxy: p}))
	}
}

// TestWireBytesStable translates every case repeatedly and wants the same
// bytes for each resource, marshalled as the server does to version it:
// an embedded Any marshalled with map fields in a random order would give
// an unchanged listener a new version, and a new version retires the
// listener's connections.
func TestWireBytesStable(t *testing.T) {
	wire := func(out *Output) map[string][]byte {
		m := map[string][]byte{}
		add := func(kind, name string, msg proto.Message) {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
			if err != nil {
				t.Fatalf("marshal %s %s: %v", kind, name, err)
			}
			m[kind+"/"+name] = b
		}
		for _, c := range out.Clusters {
			add("cluster", c.GetName(), c)
		}
		for _, e := range out.Endpoints {
			add("endpoints", e.GetClusterName(), e)
		}
		for _, l := range out.Listeners {
			add("listener", l.GetName(), l)
		}
		for _, r := range out.Routes {
			add("route", r.GetName(), r)
		}
		for _, s := range out.Secrets {
			add("secret", s.GetName(), s)
		}
		return m
	}
	for _, dir := range caseDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in := loadCase(t, dir)
			want := wire(Translate(in))
			for i := 0; i < 10; i++ {
				for name, b := range wire(Translate(in)) {
					if !bytes.Equal(b, want[name]) {
						t.Fatalf("translation %d: %s has different bytes", i, name)
					}
				}
			}
		})
	}
}
