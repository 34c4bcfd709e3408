package demoapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// App is one demo workload.
type App struct {
	// Name is what the root path answers: "this is NAME". Required.
	Name string
	// Version is what /env/version answers when the environment has no
	// "version" variable; empty means "v1".
	Version string
	// Delay is added before every answer; zero means none.
	Delay time.Duration
	// FailPercent of requests (0-100) answer FailStatus instead; zero
	// means none.
	FailPercent float64
	// FailStatus is the failure status; zero means 503.
	FailStatus int
	// Getenv reads the environment for /env/NAME; nil means os.Getenv.
	Getenv func(string) string
	// Client is used by /fetch; nil means a client with a 10 s timeout.
	Client *http.Client
}

// Handler serves:
//
//	/              "this is NAME"
//	/env/VAR       the environment variable VAR ("version" falls back to Version)
//	/headers       the request headers, one "Name: value" a line, sorted
//	/fetch?url=U   the body of GET U (the app calling another service)
//	/healthz       "ok", never delayed or failed
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/env/{var}", a.wrap(func(w http.ResponseWriter, r *http.Request) {
		v := r.PathValue("var")
		get := a.Getenv
		if get == nil {
			get = os.Getenv
		}
		val := get(v)
		if val == "" && v == "version" {
			val = a.version()
		}
		io.WriteString(w, val+"\n")
	}))
	mux.HandleFunc("/headers", a.wrap(func(w http.ResponseWriter, r *http.Request) {
		var lines []string
		for k, vs := range r.Header {
			for _, v := range vs {
				lines = append(lines, k+": "+v)
			}
		}
		lines = append(lines, "Host: "+r.Host)
		sort.Strings(lines)
		io.WriteString(w, strings.Join(lines, "\n")+"\n")
	}))
	mux.HandleFunc("/fetch", a.wrap(a.fetch))
	mux.HandleFunc("/", a.wrap(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "this is "+a.Name+"\n")
	}))
	return mux
}

func (a *App) version() string {
	if a.Version == "" {
		return "v1"
	}
	return a.Version
}

func (a *App) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-demoapp", a.Name)
		if a.Delay > 0 {
			select {
			case <-time.After(a.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if a.FailPercent > 0 && rand.Float64()*100 < a.FailPercent {
			st := a.FailStatus
			if st == 0 {
				st = http.StatusServiceUnavailable
			}
			http.Error(w, fmt.Sprintf("%s failing on purpose", a.Name), st)
			return
		}
		h(w, r)
	}
}

func (a *App) fetch(w http.ResponseWriter, r *http.Request) {
	u := r.URL.Query().Get("url")
	if u == "" {
		http.Error(w, "fetch: the url query parameter is required, e.g. /fetch?url=http://bill-service:9999/", http.StatusBadRequest)
		return
	}
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	c := a.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u, nil)
	if err != nil {
		http.Error(w, "fetch: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := c.Do(req)
	if err != nil {
		http.Error(w, "fetch: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// Validate reports the first bad field.
func (a *App) Validate() error {
	switch {
	case a.Name == "":
		return errors.New("name: required, e.g. bill-service-v1")
	case a.FailPercent < 0 || a.FailPercent > 100:
		return fmt.Errorf("fail-percent: got %g, want 0 to 100", a.FailPercent)
	case a.FailStatus != 0 && (a.FailStatus < 100 || a.FailStatus > 599):
		return fmt.Errorf("fail-status: got %d, want an HTTP status 100-599", a.FailStatus)
	case a.Delay < 0:
		return fmt.Errorf("delay: got %s, want zero or more", a.Delay)
	}
	return nil
}

// Serve answers on l until ctx ends, then lets the requests in flight
// finish (for up to 2 s) and returns.
func (a *App) Serve(ctx context.Context, l net.Listener) error {
	if err := a.Validate(); err != nil {
		return err
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	shut := make(chan struct{})
	go func() {
		defer close(shut)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Serve returns as soon as the shutdown starts: let the requests in
	// flight finish (up to 2 s) before the process may exit.
	<-shut
	return nil
}

// ListenAndServe listens on addr (":80", "127.0.0.1:0") and serves until
// ctx ends. ready, if not nil, receives the bound address.
func (a *App) ListenAndServe(ctx context.Context, addr string, ready func(net.Addr)) error {
	if err := a.Validate(); err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if ready != nil {
		ready(l.Addr())
	}
	return a.Serve(ctx, l)
}

// ParsePercent parses "50" or "50%".
func ParsePercent(s string) (float64, error) {
	return strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
}
