package cli

import (
	"strings"
	"testing"
)

func TestRootCommands(t *testing.T) {
	var names []string
	for _, c := range Root().Commands() {
		names = append(names, c.Name())
	}
	got := strings.Join(names, " ")
	want := "analyze authz create-remote-secret dashboard demo demoapp explain install kube-inject local manifest profile proxy-config proxy-status shift uninstall version"
	if got != want {
		t.Errorf("got commands %q, want %q", got, want)
	}
}
