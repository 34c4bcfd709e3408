package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestProxyConfigDecodesTranslatorTypes checks that the Go package of
// every typed config trellisd emits (as recorded in the translator's golden
// outputs) is linked into the trellis binary, so that proxy-config can
// decode a live /config_dump: one unknown "@type" makes the whole dump
// undecodable. This test binary links the translator itself, so the check
// is against `go list -deps` of cmd/trellis, not this process's registry.
func TestProxyConfigDecodesTranslatorTypes(t *testing.T) {
	files, err := filepath.Glob("../xds/translate/testdata/*/output.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no translator golden outputs under ../xds/translate/testdata")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/trellis-mesh/trellis/cmd/trellis").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	linked := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		linked[p] = true
	}
	// Only "@type" URLs name messages a dump must decode; a TypedStruct's
	// type_url (Istio's stats.PluginConfig) travels as a Struct.
	re := regexp.MustCompile(`'@type': (type\.googleapis\.com/[A-Za-z0-9_.]+[A-Za-z0-9_])`)
	where := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			where[m[1]] = filepath.Base(filepath.Dir(f))
		}
	}
	var urls []string
	for u := range where {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	for _, u := range urls {
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(u)
		if err != nil {
			t.Errorf("%s (in testdata/%s): unknown to this test binary too: %v", u, where[u], err)
			continue
		}
		opts, _ := mt.Descriptor().ParentFile().Options().(*descriptorpb.FileOptions)
		pkg, _, _ := strings.Cut(opts.GetGoPackage(), ";")
		if pkg == "" {
			t.Errorf("%s: no go_package", u)
			continue
		}
		if !linked[pkg] {
			t.Errorf("%s (in testdata/%s) is not linked into cmd/trellis: add _ %q to internal/envoyext", u, where[u], pkg)
		}
	}
}
