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

// TestProxyBuildKeepsDeadcodeElimination guards the build the docs give
// (`go build -tags grpcnotrace`): grpc-go's request tracing
// (golang.org/x/net/trace) renders html/template pages, and a reachable
// template engine makes reflect.Value.MethodByName reachable, so the
// linker keeps every exported method of every type — the generated
// protobuf Validate methods alone are 2.8 MB of text — and the sidecar
// idles about 3 MiB higher (BENCHMARKS.md, "Idle RSS as a sidecar").
// cobra's text/template use is unreachable in its default configuration.
func TestProxyBuildKeepsDeadcodeElimination(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "grpcnotrace", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		switch d {
		case "golang.org/x/net/trace", "html/template":
			t.Errorf("trellis-proxy built with -tags grpcnotrace links %s, which disables the linker's dead method elimination", d)
		}
	}
}
