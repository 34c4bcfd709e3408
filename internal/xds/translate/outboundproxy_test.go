package translate

import (
	"bytes"
	"path/filepath"
	"reflect"
	"testing"
)

// change sets v, a settable field, to a different value of its type.
func change(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "-changed")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Slice:
		cp := reflect.MakeSlice(v.Type(), v.Len(), v.Len()+1)
		reflect.Copy(cp, v)
		v.Set(reflect.Append(cp, reflect.Zero(v.Type().Elem())))
	case reflect.Map:
		cp := reflect.MakeMap(v.Type())
		for _, k := range v.MapKeys() {
			cp.SetMapIndex(k, v.MapIndex(k))
		}
		k := reflect.New(v.Type().Key()).Elem()
		change(t, k)
		cp.SetMapIndex(k, reflect.Zero(v.Type().Elem()))
		v.Set(cp)
	default:
		t.Fatalf("no way to change a %s: teach change() this kind", v.Type())
	}
}

// Key must change with every field of OutboundProxy, found by reflection,
// so a field added later cannot be left out of the cache key.
func TestOutboundProxyKeyCoversEveryField(t *testing.T) {
	base := OutboundProxy{Type: SidecarProxy, Generator: "g", Namespace: "ns", Locality: "r/z/s", Labels: map[string]string{"app": "a"}}
	rt := reflect.TypeOf(base)
	for i := range rt.NumField() {
		f := rt.Field(i)
		t.Run(f.Name, func(t *testing.T) {
			if !f.IsExported() {
				t.Fatalf("field %s is unexported; OutboundProxy fields must be exported so this test can change them", f.Name)
			}
			changed := base
			change(t, reflect.ValueOf(&changed).Elem().Field(i))
			if changed.Key() == base.Key() {
				t.Errorf("changing %s (%v to %v) left the key unchanged", f.Name,
					reflect.ValueOf(base).Field(i), reflect.ValueOf(changed).Field(i))
			}
		})
	}
}

func TestOutboundProxyKeyCanonical(t *testing.T) {
	key := func(l map[string]string) string { return OutboundProxy{Namespace: "ns", Labels: l}.Key() }
	a := map[string]string{}
	b := map[string]string{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		a[k] = "v" + k
	}
	for _, k := range []string{"h", "g", "f", "e", "d", "c", "b", "a"} {
		b[k] = "v" + k
	}
	if key(a) != key(b) {
		t.Error("equal labels built in different orders got different keys")
	}
	if key(nil) != key(map[string]string{}) {
		t.Error("nil and empty labels got different keys")
	}
	if key(map[string]string{"a": "bc"}) == key(map[string]string{"ab": "c"}) {
		t.Error("a=bc and ab=c got the same key")
	}
	if (OutboundProxy{Namespace: "ab", Locality: "c"}).Key() == (OutboundProxy{Namespace: "a", Locality: "bc"}).Key() {
		t.Error("fields that concatenate alike got the same key")
	}
}

// outboundAndEndpoints renders what a server caches per OutboundProxy key.
func outboundAndEndpoints(t *testing.T, in Input) []byte {
	t.Helper()
	out := Outbound(in)
	out.Endpoints = Endpoints(in, out.EDSClusterNames())
	return render(t, out)
}

func withProxy(in Input, edit func(p *Proxy)) Input {
	p := *in.Proxy
	edit(&p)
	in.Proxy = &p
	return in
}

// Every OutboundProxy field is read: for each (by reflection) a case
// changes that field of the Proxy and gets another key and other output.
// A field no case shows to matter is one translation does not read, and
// only splits the cache.
func TestOutboundProxyFieldsAreRead(t *testing.T) {
	cases := map[string]struct {
		dir  string
		edit func(p *Proxy)
	}{
		"Type":      {"bill-service", func(p *Proxy) { p.Type = RouterProxy }},
		"Generator": {"bill-service", func(p *Proxy) { p.Generator = GeneratorGRPC }},
		"Namespace": {"bill-service", func(p *Proxy) { p.Namespace = "other" }},
		"Locality":  {"locality-failover", func(p *Proxy) { p.Locality = "eu-west/b" }},
		"Network":   {"multi-network", func(p *Proxy) { p.Network = "network2" }},
		"Labels":    {"match-conditions", func(p *Proxy) { p.Labels = map[string]string{"app": "other"} }},
		// Without a canonical-service label the workload name is the spans'
		// istio.canonical_service.
		"Name":    {"tracing-telemetry", func(p *Proxy) { p.Labels = map[string]string{"version": "v1"}; p.Name = "reviews-v1" }},
		"Cluster": {"tracing-telemetry", func(p *Proxy) { p.Cluster = "east" }},
	}
	rt := reflect.TypeOf(OutboundProxy{})
	for i := range rt.NumField() {
		name := rt.Field(i).Name
		t.Run(name, func(t *testing.T) {
			tc, ok := cases[name]
			if !ok {
				t.Fatalf("no case shows that outbound translation reads OutboundProxy.%s: add one, or drop the field", name)
			}
			in := loadCase(t, filepath.Join("testdata", tc.dir))
			in2 := withProxy(in, tc.edit)
			if NewOutboundProxy(in).Key() == NewOutboundProxy(in2).Key() {
				t.Errorf("changing Proxy.%s left the key unchanged", name)
			}
			if bytes.Equal(outboundAndEndpoints(t, in), outboundAndEndpoints(t, in2)) {
				t.Errorf("changing Proxy.%s left Outbound and Endpoints unchanged", name)
			}
		})
	}
}

// Every Proxy field that OutboundProxy leaves out (by reflection) changes
// neither the key nor Outbound and Endpoints, in every case.
func TestOutboundIgnoresOtherProxyFields(t *testing.T) {
	read := map[string]bool{}
	ot := reflect.TypeOf(OutboundProxy{})
	for i := range ot.NumField() {
		read[ot.Field(i).Name] = true
	}
	pt := reflect.TypeOf(Proxy{})
	for _, dir := range caseDirs(t) {
		in := loadCase(t, dir)
		want, wantKey := outboundAndEndpoints(t, in), NewOutboundProxy(in).Key()
		for i := range pt.NumField() {
			f := pt.Field(i)
			if read[f.Name] {
				continue
			}
			t.Run(filepath.Base(dir)+"/"+f.Name, func(t *testing.T) {
				in2 := withProxy(in, func(p *Proxy) { change(t, reflect.ValueOf(p).Elem().Field(i)) })
				if NewOutboundProxy(in2).Key() != wantKey {
					t.Errorf("changing Proxy.%s changed the key", f.Name)
				}
				if got := outboundAndEndpoints(t, in2); !bytes.Equal(got, want) {
					t.Errorf("changing Proxy.%s changed the output:\n%s", f.Name, firstDiff(string(got), string(want)))
				}
			})
		}
	}
}
