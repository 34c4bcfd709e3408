package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

const chartPath = "../../" + install.ChartDir

// helmBinary is the pinned helm: $TRELLIS_HELM, else what scripts/helm.sh
// prints (it builds helm once per machine and caches it).
func helmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TRELLIS_HELM"); p != "" {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	cmd := exec.Command("bash", "../../scripts/helm.sh")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("skipping: no helm binary (scripts/helm.sh: %v)", err)
	}
	return strings.TrimSpace(string(out))
}

func runHelm(t *testing.T, helm string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helm, args...)
	// Keep helm's caches and config inside the test.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// objectsByKey parses a multi-document YAML stream into objects keyed by
// kind/namespace/name; comments and empty documents are dropped.
func objectsByKey(t *testing.T, stream string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range strings.Split("\n"+stream, "\n---") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("parse document: %v\n%s", err, doc)
		}
		if len(obj) == 0 {
			continue
		}
		md, _ := obj["metadata"].(map[string]any)
		key := fmt.Sprintf("%v/%v/%v", obj["kind"], md["namespace"], md["name"])
		if _, dup := out[key]; dup {
			t.Fatalf("%s appears twice", key)
		}
		out[key] = obj
	}
	return out
}

// sameObjects compares two manifest streams object by object.
func sameObjects(t *testing.T, what, got, want string) {
	t.Helper()
	g, w := objectsByKey(t, got), objectsByKey(t, want)
	var keys []string
	for k := range w {
		keys = append(keys, k)
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			t.Errorf("%s: %s is rendered by helm only", what, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		gv, ok := g[k]
		if !ok {
			t.Errorf("%s: %s is missing from helm's output", what, k)
			continue
		}
		if !reflect.DeepEqual(gv, w[k]) {
			gy, _ := yaml.Marshal(gv)
			wy, _ := yaml.Marshal(w[k])
			t.Errorf("%s: %s differs; helm:\n%s\ntrellis manifest generate:\n%s", what, k, gy, wy)
		}
	}
}

// TestHelmTemplateMatchesManifestGenerate renders the chart with the real
// helm binary for every profile, and with every chart value overridden,
// and compares it with `trellis manifest generate`.
func TestHelmTemplateMatchesManifestGenerate(t *testing.T) {
	helm := helmBinary(t)
	type run struct{ name, helmSet, trellisSet []string }
	var runs []run
	for _, p := range install.Profiles() {
		runs = append(runs, run{[]string{p}, []string{"profile=" + p}, []string{"profile=" + p}})
	}
	runs = append(runs, run{[]string{"demo with overrides"},
		[]string{"profile=demo", "global.hub=registry.example:5000/mesh", "global.tag=1.2.3", "global.istioNamespace=mesh-system"},
		[]string{"profile=demo", "values.global.hub=registry.example:5000/mesh", "values.global.tag=1.2.3", "values.global.istioNamespace=mesh-system"}})
	for _, r := range runs {
		t.Run(strings.Join(r.name, ""), func(t *testing.T) {
			args := []string{"template", "trellis", chartPath}
			for _, s := range r.helmSet {
				args = append(args, "--set", s)
			}
			got, err := runHelm(t, helm, args...)
			if err != nil {
				t.Fatal(err)
			}
			cli := []string{"manifest", "generate"}
			for _, s := range r.trellisSet {
				cli = append(cli, "--set", s)
			}
			want, err := runCLI(t, "", cli...)
			if err != nil {
				t.Fatal(err)
			}
			if r.name[0] != "empty" && len(objectsByKey(t, want)) == 0 {
				t.Fatalf("trellis manifest generate rendered nothing")
			}
			sameObjects(t, "helm template "+strings.Join(r.helmSet, " "), got, want)
			if r.name[0] == "demo with overrides" && !strings.Contains(got, "image: registry.example:5000/mesh/proxy:1.2.3") {
				t.Errorf("overrides: helm output lacks the overridden proxy image")
			}
		})
	}
	if _, err := runHelm(t, helm, "template", "trellis", chartPath, "--set", "profile=prod"); err == nil || !strings.Contains(err.Error(), `profile: "prod" is not a Trellis profile`) {
		t.Errorf("unknown profile: got %v, want the chart to refuse it", err)
	}
	for _, set := range []string{"global.network=network1", "global.multiCluster.clusterName=cluster1", "global.meshID=mesh1"} {
		if _, err := runHelm(t, helm, "template", "trellis", chartPath, "--set", set); err == nil || !strings.Contains(err.Error(), "not templated by this chart") {
			t.Errorf("--set %s: got %v, want the chart to refuse it", set, err)
		}
	}
}

// TestHelmInstallAgainstAPIServer installs the chart with the real helm
// binary into a real kube-apiserver: a server-side dry run, then the
// install itself, whose objects are then read back.
func TestHelmInstallAgainstAPIServer(t *testing.T) {
	helm := helmBinary(t)
	env, err := kubetest.Start()
	if errors.Is(err, kubetest.ErrNoBinaries) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Stop)
	kc := env.Kubeconfig
	ctx := context.Background()

	for _, p := range install.Profiles() {
		if out, err := runHelm(t, helm, "lint", chartPath, "--set", "profile="+p); err != nil {
			t.Errorf("helm lint --set profile=%s: %v\n%s", p, err, out)
		}
		out, err := runHelm(t, helm, "install", "trellis", chartPath, "--kubeconfig", kc, "--namespace", "default", "--set", "profile="+p, "--dry-run=server")
		if err != nil {
			t.Fatalf("helm install --dry-run=server --set profile=%s: %v", p, err)
		}
		if !strings.Contains(out, "STATUS: pending-install") || (p != "empty" && !strings.Contains(out, "kind: CustomResourceDefinition")) {
			t.Errorf("dry run of profile %s: output lacks the pending release and its manifest:\n%.2000s", p, out)
		}
	}
	if _, err := env.Clients.Kube.AppsV1().Deployments("trellis-system").Get(ctx, "trellisd", metav1.GetOptions{}); err == nil {
		t.Fatalf("the dry run created the trellisd Deployment")
	}

	if out, err := runHelm(t, helm, "install", "trellis", chartPath, "--kubeconfig", kc, "--namespace", "default", "--set", "profile=demo"); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	want, err := runCLI(t, "", "manifest", "generate", "--set", "profile=demo")
	if err != nil {
		t.Fatal(err)
	}
	for key, obj := range objectsByKey(t, want) {
		md := obj["metadata"].(map[string]any)
		kind, _ := obj["kind"].(string)
		ns, _ := md["namespace"].(string)
		name, _ := md["name"].(string)
		var getErr error
		switch kind {
		case "Deployment":
			_, getErr = env.Clients.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		case "Service":
			_, getErr = env.Clients.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		case "ConfigMap":
			_, getErr = env.Clients.Kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		case "MutatingWebhookConfiguration":
			_, getErr = env.Clients.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		case "CustomResourceDefinition":
			_, getErr = env.Clients.Ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		default:
			continue
		}
		if getErr != nil {
			t.Errorf("%s after helm install: %v", key, getErr)
		}
	}
	if out, err := runHelm(t, helm, "uninstall", "trellis", "--kubeconfig", kc, "--namespace", "default"); err != nil {
		t.Errorf("helm uninstall: %v\n%s", err, out)
	}
}
