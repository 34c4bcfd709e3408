package webhook_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/webhook"
)

func post(h http.Handler, path, ctype, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandlerRejectsBadRequests(t *testing.T) {
	h := (&webhook.Server{Inject: webhook.NewInjector(inject.DefaultConfig()), Validate: true}).Handler()
	cases := []struct {
		name, path, ctype, body string
		want                    int
	}{
		{"wrong content type", "/inject", "text/plain", "{}", http.StatusUnsupportedMediaType},
		{"not json", "/validate", "application/json", "{", http.StatusBadRequest},
		{"no request", "/validate", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest},
		{"unknown path", "/mutate", "application/json", "{}", http.StatusNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := post(h, c.path, c.ctype, c.body).Code; got != c.want {
				t.Errorf("got status %d, want %d", got, c.want)
			}
		})
	}
}

func review(t *testing.T, h http.Handler, path string, req admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	b, _ := json.Marshal(admissionv1.AdmissionReview{Request: &req})
	rec := post(h, path, "application/json", string(b))
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("response: %v %s", err, rec.Body)
	}
	if out.Response.UID != req.UID {
		t.Errorf("uid: got %q, want %q", out.Response.UID, req.UID)
	}
	return out.Response
}

func TestValidateReview(t *testing.T) {
	h := (&webhook.Server{Validate: true}).Handler()
	cases := []struct {
		name    string
		kind    string
		object  string
		allowed bool
		msg     string
	}{
		{"valid", "VirtualService", `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"a","namespace":"n"},"spec":{"hosts":["a"],"http":[{"route":[{"destination":{"host":"a"}}]}]}}`, true, ""},
		{"unknown field", "VirtualService", `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"a","namespace":"n"},"spec":{"hostz":["a"]}}`, false, "spec.hostz"},
		{"bad weight", "DestinationRule", `{"apiVersion":"networking.istio.io/v1beta1","kind":"DestinationRule","metadata":{"name":"d","namespace":"n"},"spec":{"host":"a","trafficPolicy":{"loadBalancer":{"simple":"FASTEST"}}}}`, false, "spec.trafficPolicy.loadBalancer.simple"},
		{"security kind not enforced yet", "RequestAuthentication", `{"apiVersion":"security.istio.io/v1","kind":"RequestAuthentication","metadata":{"name":"jwt","namespace":"n"},"spec":{"targetRef":{"group":"gateway.networking.k8s.io","kind":"Gateway","name":"gw"},"jwtRules":[{"issuer":"https://issuer.example.com","jwksUri":"https://issuer.example.com/jwks"}]}}`, false, "RequestAuthentication n/jwt: not enforced yet"},
		{"allow-nothing is enforced", "AuthorizationPolicy", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"deny","namespace":"n"},"spec":{}}`, true, ""},
		{"enforced security kind", "PeerAuthentication", `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"n"},"spec":{"mtls":{"mode":"STRICT"}}}`, true, ""},
		{"kind trellis does not read", "EnvoyFilter", `{"apiVersion":"networking.istio.io/v1alpha3","kind":"EnvoyFilter","metadata":{"name":"e","namespace":"n"},"spec":{}}`, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := review(t, h, "/validate", admissionv1.AdmissionRequest{UID: "u1", Operation: admissionv1.Create, Namespace: "n", Name: "a",
				Object: runtimeRaw(c.object)})
			resp.UID = "u1"
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed: got %v, want %v (%v)", resp.Allowed, c.allowed, resp.Result)
			}
			if c.msg != "" && !strings.Contains(resp.Result.Message, c.msg) {
				t.Errorf("message: got %q, want it to name %s", resp.Result.Message, c.msg)
			}
		})
	}
}

func FuzzReview(f *testing.F) {
	f.Add("/validate", `{"request":{"uid":"x","operation":"CREATE","kind":{"kind":"VirtualService"},"object":{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"a"},"spec":{"hosts":["a"]}}}}`)
	f.Add("/inject", `{"request":{"uid":"x","operation":"CREATE","kind":{"kind":"Pod"},"namespace":"d","object":{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":"http"}}}]}}}}`)
	f.Add("/inject", `{"request":{"kind":{"kind":"Pod"},"operation":"CREATE","object":null}}`)
	h := (&webhook.Server{Inject: webhook.NewInjector(inject.DefaultConfig()), Validate: true}).Handler()
	f.Fuzz(func(t *testing.T, path, body string) {
		if path != "/inject" && path != "/validate" {
			path = "/validate"
		}
		rec := post(h, path, "application/json", body)
		if rec.Code == 200 {
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Errorf("200 without an AdmissionReview response: %v %s", err, rec.Body)
			}
		}
	})
}
