package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/version"

	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/webhook"
)

// scriptedVersions answers ServerVersion from a list, counting calls.
type scriptedVersions struct {
	answers []any // *version.Info or error
	calls   int
}

func (s *scriptedVersions) ServerVersion() (*version.Info, error) {
	a := s.answers[min(s.calls, len(s.answers)-1)]
	s.calls++
	if err, ok := a.(error); ok {
		return nil, err
	}
	return a.(*version.Info), nil
}

func TestInjectorTarget(t *testing.T) {
	// No version source: the fallback form, which every cluster runs.
	if got, err := webhook.NewInjector(inject.DefaultConfig()).Target(); err != nil || got.NativeSidecars || got.Server != "" {
		t.Errorf("without discovery: got %+v, %v; want the unknown, non-native target", got, err)
	}

	src := &scriptedVersions{answers: []any{
		errors.New("connection refused"),
		&version.Info{Major: "1", Minor: "32", GitVersion: "v1.32.13"},
		errors.New("connection refused"),
		&version.Info{Major: "1", Minor: "28+", GitVersion: "v1.28.9-eks-1"},
	}}
	inj := webhook.NewInjector(inject.DefaultConfig())
	inj.ServerVersion, inj.VersionTTL = src, time.Hour

	got, err := inj.Target()
	if err == nil || !strings.Contains(err.Error(), "discover the API server version") || got.NativeSidecars {
		t.Errorf("discovery down before any answer: got %+v, %v; want the fallback and the error", got, err)
	}
	got, err = inj.Target()
	if err != nil || !got.NativeSidecars || got.Server != "Kubernetes v1.32.13" {
		t.Errorf("v1.32.13: got %+v, %v; want native", got, err)
	}
	// Within the TTL the answer is reused: discovery is not asked again.
	if got, _ := inj.Target(); !got.NativeSidecars || src.calls != 2 {
		t.Errorf("within the TTL: got %+v after %d calls, want the cached native target after 2", got, src.calls)
	}

	inj2 := webhook.NewInjector(inject.DefaultConfig())
	inj2.ServerVersion, inj2.VersionTTL = src, time.Nanosecond
	src.calls = 1
	inj2.Target() // v1.32.13
	time.Sleep(time.Millisecond)
	got, err = inj2.Target() // discovery fails: the last known target stays
	if err == nil || !got.NativeSidecars {
		t.Errorf("discovery failing after a success: got %+v, %v; want the last known native target and the error", got, err)
	}
	time.Sleep(time.Millisecond)
	if got, err := inj2.Target(); err != nil || got.NativeSidecars || got.Server != "Kubernetes v1.28.9-eks-1" {
		t.Errorf("v1.28.9-eks-1: got %+v, %v; want the fallback", got, err)
	}
}
