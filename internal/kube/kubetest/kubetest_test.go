package kubetest

import (
	"os"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestSharedServesTheAPI(t *testing.T) {
	env := Shared(t)
	v, err := env.Clients.Discovery.ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if got, want := v.GitVersion, "v"+KubeVersion; got != want {
		t.Errorf("got version %s, want %s", got, want)
	}
	ns, err := env.Clients.Kube.CoreV1().Namespaces().Get(Context(t), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get namespace default: %v", err)
	}
	if ns.Name != "default" {
		t.Errorf("got namespace %q, want default", ns.Name)
	}
}
