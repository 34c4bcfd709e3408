package shift

import (
	"bytes"
	"os"
	"testing"
)

// FuzzRewriteDoc feeds arbitrary YAML documents to the in-place weight
// editor: it must not panic, and a successful rewrite must be stable (a
// second rewrite to the same subset changes nothing).
func FuzzRewriteDoc(f *testing.F) {
	for _, name := range []string{"testdata/worker-virtualservice.yaml", "testdata/natural.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range splitDocs(b) {
			if c.isDoc {
				f.Add(c.text, "burst")
			}
		}
	}
	f.Add([]byte("spec:\n  http:\n  - route:\n    - destination: {subset: burst}\n    - destination:\n        subset: primary\n"), "primary")
	f.Add([]byte("spec: {http: [{route: [{destination: {subset: burst}, weight: '7'}]}]}"), "burst")
	f.Fuzz(func(t *testing.T, doc []byte, subset string) {
		out, changed, err := rewriteDoc(doc, worker, subset)
		if err != nil || !changed {
			return
		}
		again, changed2, err := rewriteDoc(out, worker, subset)
		if err != nil {
			t.Fatalf("rewrite of rewritten doc: %v\nin:\n%s\nout:\n%s", err, doc, out)
		}
		if changed2 || !bytes.Equal(again, out) {
			t.Fatalf("rewrite not stable:\nin:\n%s\nfirst:\n%s\nsecond:\n%s", doc, out, again)
		}
	})
}
