package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

func runCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := Root()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestInstallVersionKubeInjectUninstall drives the Kubernetes commands as
// a user would, against a real API server.
func TestInstallVersionKubeInjectUninstall(t *testing.T) {
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

	if _, err := runCLI(t, "n\n", "install", "--set", "profile=demo", "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("install answered n: got %v, want cancelled", err)
	}
	out, err := runCLI(t, "", "install", "--set", "profile=demo", "-y", "--wait=false", "--kubeconfig", kc)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	for _, want := range []string{"✔ Trellis core installed", "✔ Control plane installed", "✔ Egress gateways installed", "✔ Ingress gateways installed", "✔ Installation complete"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output: got %q, want %q", out, want)
		}
	}

	// kube-inject output is a valid object for the API server.
	dir := t.TempDir()
	in := filepath.Join(dir, "pod.yaml")
	os.WriteFile(in, []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: default\nspec:\n  containers:\n  - name: web\n    image: nginx\n"), 0o644)
	injected, err := runCLI(t, "", "kube-inject", "-f", in)
	if err != nil {
		t.Fatalf("kube-inject: %v", err)
	}
	var pod corev1.Pod
	if err := yamlToPod(injected, &pod); err != nil {
		t.Fatalf("kube-inject output: %v\n%s", err, injected)
	}
	// No webhook server runs here: drop the webhook configurations so the
	// API server does not try to call trellisd's Service.
	env.Clients.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, "trellis-sidecar-injector", metav1.DeleteOptions{})
	if _, err := env.Clients.Kube.CoreV1().Pods("default").Create(ctx, &pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create injected pod: %v", err)
	}

	// The injected Job (its own init container and native sidecar with a
	// rewritten probe) passes the API server's validation in both forms.
	for _, ver := range []string{"1.32", "1.28"} {
		injected, err := runCLI(t, "", "kube-inject", "-f", "../inject/testdata/job.in.yaml", "--kube-version", ver)
		if err != nil {
			t.Fatalf("kube-inject --kube-version %s: %v", ver, err)
		}
		var job batchv1.Job
		if err := yaml.Unmarshal([]byte(strings.Split(injected, "\n---\n")[0]), &job); err != nil {
			t.Fatal(err)
		}
		job.Namespace, job.Name = "default", "report-"+strings.ReplaceAll(ver, ".", "-")
		if _, err := env.Clients.Kube.BatchV1().Jobs("default").Create(ctx, &job, metav1.CreateOptions{}); err != nil {
			t.Errorf("create the Job injected for %s: %v", ver, err)
		}
	}

	out, err = runCLI(t, "", "version", "--kubeconfig", kc)
	if err != nil {
		t.Fatalf("version: %v", err)
	}
	want := "client version: 0.1.0-dev\ncontrol plane version: 0.1.0-dev (not available yet)\ndata plane version: 0.1.0-dev (1 proxy)\n"
	if out != want {
		t.Errorf("version: got\n%s\nwant\n%s", out, want)
	}

	out, err = runCLI(t, "", "uninstall", "--purge", "-y", "--kubeconfig", kc)
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if !strings.Contains(out, "✔ Uninstall complete") {
		t.Errorf("uninstall output: got %q", out)
	}
	if _, err := env.Clients.Kube.AppsV1().Deployments("trellis-system").Get(ctx, "trellisd", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("trellisd after uninstall: got %v, want not found", err)
	}
	if _, err := env.Clients.Ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "virtualservices.networking.istio.io", metav1.GetOptions{}); err == nil {
		crd, _ := env.Clients.Ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "virtualservices.networking.istio.io", metav1.GetOptions{})
		if crd.DeletionTimestamp == nil {
			t.Errorf("VirtualService CRD still present after uninstall --purge")
		}
	}
	out, _ = runCLI(t, "", "version", "--kubeconfig", kc)
	if !strings.Contains(out, "control plane version: none (no trellisd Deployment in trellis-system)") {
		t.Errorf("version after uninstall: got %q", out)
	}
}
