package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProxyImportsStayLean guards the proxy's footprint: its memory is
// multiplied by every pod, so it links nothing from Kubernetes' client
// libraries and nothing of the control plane (config, registry,
// translation, ADS server).
func TestProxyImportsStayLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const self = "github.com/trellis-mesh/trellis/internal/"
	forbidden := []string{self + "config", self + "registry", self + "xds", self + "trellisd", self + "kube", self + "install", self + "inject", self + "webhook", self + "cli"}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %d packages: %q", len(deps), deps)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "k8s.io/") {
			t.Errorf("trellis-proxy links %s; the proxy must import nothing under k8s.io/", d)
		}
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("trellis-proxy links %s; control-plane packages stay out of the proxy", d)
			}
		}
	}
}
