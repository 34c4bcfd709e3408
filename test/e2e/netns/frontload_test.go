package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/demoapp"
	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/test/e2e/meshbin"
)

// frontLoad returns a function that runs `trellis demoapp load` inside the
// front workload: calls requests to bill-service, concurrency at a time,
// each on a new connection (so every call goes through a handshake).
func frontLoad(ctx context.Context, m *local.Mesh, concurrency int) func(calls int) (demoapp.Result, []byte, error) {
	bins, _ := local.FindBinaries(meshbin.Dir())
	return func(calls int) (demoapp.Result, []byte, error) {
		body, err := m.Exec(ctx, "front", bins.Trellis, "demoapp", "load", "--calls", fmt.Sprint(calls),
			"--concurrency", fmt.Sprint(concurrency), "--keepalive=false", "http://bill-service:9999/")
		var r demoapp.Result
		if err == nil {
			err = json.Unmarshal(body, &r)
		}
		return r, body, err
	}
}

// waitAnswering waits up to a minute for five calls in a row to answer 200.
func waitAnswering(t *testing.T, load func(calls int) (demoapp.Result, []byte, error), what string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		if r, _, err := load(5); err == nil && r.Status[200] == 5 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}
