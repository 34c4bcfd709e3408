package controlplane

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
	if o.TrustDomain != "cluster.local" {
		t.Errorf("trust domain: got %q, want install's cluster.local", o.TrustDomain)
	}
	os.WriteFile(p, []byte("trustDomain: example.org\n"), 0o644)
	if _, err := ApplyMeshConfig(p, &o); err != nil || o.TrustDomain != "example.org" {
		t.Errorf("trustDomain example.org: got %q, %v", o.TrustDomain, err)
	}
	os.WriteFile(p, []byte("accessLogFile: x\nbogus: 1\n"), 0o644)
	if _, err := ApplyMeshConfig(p, &o); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown key: got %v, want an error naming bogus", err)
	}
}

// TestInstalledArgsParse checks that the args install gives the trellisd
// container are all flags trellisd (with RegisterFlags) accepts.
func TestInstalledArgsParse(t *testing.T) {
	s, err := install.Load(install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	comps, _ := install.Render(s)
	var args []string
	for _, o := range install.Objects(comps) {
		if o.GetKind() == "Deployment" && o.GetName() == install.ControlPlaneName {
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			for _, a := range cs[0].(map[string]any)["args"].([]any) {
				args = append(args, a.(string))
			}
		}
	}
	fs := flag.NewFlagSet("trellisd", flag.ContinueOnError)
	kf := RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("installed args %q: %v", args, err)
	}
	if !kf.Kube || kf.Namespace != "trellis-system" || kf.WebhookCertDir != "/etc/trellis/webhook" || kf.InjectConfig != "/etc/trellis/inject/config" || kf.MeshConfig != "/etc/trellis/config/mesh" {
		t.Errorf("parsed: got %+v", kf)
	}
	var o trellisd.Options
	if w, err := (&Flags{}).Setup(context.Background(), &o); w != nil || err != nil {
		t.Errorf("setup without --kube: got %v, %v; want nothing", w, err)
	}
}
