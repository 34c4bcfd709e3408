package logexpr

import (
	"strings"
	"testing"
)

func TestEval(t *testing.T) {
	ok := &Attrs{Code: 200, Method: "GET", MTLS: true}
	bad := &Attrs{Code: 503, Method: "POST", Flagged: true}
	for _, c := range []struct {
		expr    string
		ok, bad bool
	}{
		{"response.code >= 400", false, true},
		{"response.code < 300", true, false},
		{"response.code == 200 && request.method == 'GET'", true, false},
		{`request.method == "POST" || connection.mtls`, true, true},
		{"!connection.mtls", false, true},
		{"connection.mtls == false", false, true},
		{"response.flags != 0", false, true},
		{"(response.code >= 500 || response.code == 404) && request.method != \"GET\"", false, true},
		{"response.code >= 400 || response.flags == 0 && connection.mtls", true, true},
	} {
		e, err := Parse(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		if got := e.Eval(ok); got != c.ok {
			t.Errorf("%s on 200 GET mtls: got %v, want %v", c.expr, got, c.ok)
		}
		if got := e.Eval(bad); got != c.bad {
			t.Errorf("%s on 503 POST flagged: got %v, want %v", c.expr, got, c.bad)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{"", "empty"},
		{"request.headers['x'] == 'y'", "unsupported character"},
		{"response.code >= '400'", "integer"},
		{"request.method > 'GET'", "only == and !="},
		{"response.flags == 4", "only == 0"},
		{"response.code >= 400 &&", "ends early"},
		{"(response.code >= 400", "missing )"},
		{"response.code", "needs a comparison"},
		{"response.code >= 400 response.code", "unexpected"},
		{"size(request.path) > 3", "not supported"},
	} {
		if _, err := Parse(c.expr); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error with %q", c.expr, err, c.want)
		}
	}
}

func TestEvalAllocs(t *testing.T) {
	e, _ := Parse("response.code >= 400 && request.method == 'GET' || !connection.mtls")
	a := &Attrs{Code: 500, Method: "GET"}
	if n := testing.AllocsPerRun(100, func() { e.Eval(a) }); n != 0 {
		t.Errorf("got %v allocations per Eval, want 0", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("response.code >= 400 && (request.method == 'GET' || !connection.mtls)")
	f.Fuzz(func(t *testing.T, s string) {
		if e, err := Parse(s); err == nil {
			e.Eval(&Attrs{})
		}
	})
}
