package trellisd

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// logRecorder keeps trellisd's log lines for a test and echoes them.
type logRecorder struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.t.Log(line)
}

func (l *logRecorder) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// A security resource in the config directory is parsed and validated,
// reported at error level in the log and in /debug/configz as not enforced,
// and the rest of the directory (even the same file) keeps serving.
func TestSecurityKindsReportedNotEnforced(t *testing.T) {
	dir := t.TempDir()
	writeGreeter(t, dir, 90, 10, "9001", "9002")
	writeAtomic(t, filepath.Join(dir, "strict.yaml"), `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt
  namespace: istio-system
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}
  jwtRules:
  - issuer: https://issuer.example.com
    jwksUri: https://issuer.example.com/jwks
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: other
  namespace: default
spec:
  host: other.default.svc.cluster.local
`)
	rec := &logRecorder{t: t}
	s := startTrellisd(t, Options{ConfigDir: dir, Logf: rec.logf})

	const want = "RequestAuthentication istio-system/jwt: not enforced yet"
	if !rec.has("config: error: strict.yaml#1 " + want) {
		t.Errorf("log: no error line containing %q", want)
	}
	var cz ConfigzResponse
	getJSON(t, "http://"+s.DebugAddr()+"/debug/configz", &cz)
	if len(cz.NotEnforced) != 1 {
		t.Fatalf("configz notEnforced: got %+v, want one finding", cz.NotEnforced)
	}
	f := cz.NotEnforced[0]
	if f.Level != "Error" || f.Resource != "RequestAuthentication istio-system/jwt" || !strings.HasPrefix(f.Message, "not enforced yet") {
		t.Errorf("configz finding: got %+v, want an Error naming RequestAuthentication istio-system/jwt", f)
	}
	if len(cz.Errors) != 0 {
		t.Errorf("configz errors: got %v, want none (the file is served)", cz.Errors)
	}
	served := map[string]bool{}
	for _, r := range cz.Resources {
		served[r.Kind+" "+r.Namespace+"/"+r.Name] = true
	}
	for _, k := range []string{"RequestAuthentication istio-system/jwt", "DestinationRule default/other", "VirtualService default/greeter"} {
		if !served[k] {
			t.Errorf("configz resources: %s not served; got %v", k, served)
		}
	}

	// Deleting the policy removes the finding.
	writeAtomic(t, filepath.Join(dir, "strict.yaml"), "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: other\n  namespace: default\nspec:\n  host: other.default.svc.cluster.local\n")
	eventually(t, func() error {
		var cz ConfigzResponse
		getJSON(t, "http://"+s.DebugAddr()+"/debug/configz", &cz)
		if len(cz.NotEnforced) != 0 {
			return errorf("configz notEnforced after removing the policy: got %+v, want none", cz.NotEnforced)
		}
		return nil
	})
}
