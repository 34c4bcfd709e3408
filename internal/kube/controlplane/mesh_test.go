package controlplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

func TestApplyMeshConfigFromInstall(t *testing.T) {
	s, err := install.Load(install.Options{Set: []string{"profile=demo", "meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY", "meshConfig.accessLogEncoding=JSON"}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "mesh")
	if err := os.WriteFile(p, []byte(install.MeshYAML(s)), 0o644); err != nil {
		t.Fatal(err)
	}
	var o trellisd.Options
	if _, err := ApplyMeshConfig(p, &o); err != nil {
		t.Fatal(err)
	}
	if o.AccessLogFile != "/dev/stdout" || o.AccessLogEncoding != "JSON" || o.OutboundTrafficPolicy != "REGISTRY_ONLY" {
		t.Errorf("got %q %q %q, want /dev/stdout JSON REGISTRY_ONLY", o.AccessLogFile, o.AccessLogEncoding, o.OutboundTrafficPolicy)
	}
	os.WriteFile(p, []byte("accessLogFile: x\nbogus: 1\n"), 0o644)
	if _, err := ApplyMeshConfig(p, &o); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown key: got %v, want an error naming bogus", err)
	}
}
