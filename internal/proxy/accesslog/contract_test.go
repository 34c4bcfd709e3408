package accesslog

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// TestTranslateContract compiles every access_log entry trellisd's
// translation emits in its golden cases (internal/xds/translate/testdata,
// read as data files).
func TestTranslateContract(t *testing.T) {
	files, _ := filepath.Glob("../../xds/translate/testdata/*/output.yaml")
	if len(files) == 0 {
		t.Skip("no translation goldens found next to this package")
	}
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(js, &doc); err != nil {
			t.Fatal(err)
		}
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, e := range x {
					if list, ok := e.([]any); ok && k == "access_log" {
						for _, item := range list {
							raw, _ := json.Marshal(item)
							var al accesslogv3.AccessLog
							if err := protojson.Unmarshal(raw, &al); err != nil {
								t.Errorf("%s: decode access_log: %v", f, err)
								continue
							}
							sinks := NewSinks(nil)
							sinks.Stdout = io.Discard
							logs, err := Compile([]*accesslogv3.AccessLog{&al}, "access_log", sinks)
							if err != nil {
								t.Errorf("%s: %v", f, err)
							} else {
								logs.Write(&Entry{Method: "GET", Status: 200})
								total++
							}
							sinks.Close()
						}
						continue
					}
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(doc)
	}
	t.Logf("compiled %d access logs", total)
}
