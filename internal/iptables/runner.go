package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

// Runner runs one command with optional standard input and returns its
// combined output. ExecRunner runs real commands; Recorder records them.
type Runner interface {
	Run(ctx context.Context, stdin string, name string, args ...string) (string, error)
}

// ExecRunner runs commands on this machine. Prefix, when set, is put in
// front of every command, e.g. {"ip", "netns", "exec", "ns1"} to act inside
// a network namespace.
type ExecRunner struct {
	Prefix []string
}

// Run implements Runner.
func (e ExecRunner) Run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	argv := append(append(append([]string(nil), e.Prefix...), name), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return out.String(), nil
}

// Call is one command seen by a Recorder.
type Call struct {
	Cmd   string // command line, space-joined
	Stdin string
}

// Recorder is a Runner for tests: it records every call and answers with
// Respond (nil means empty output and no error).
type Recorder struct {
	Respond func(c Call) (string, error)

	mu    sync.Mutex
	calls []Call
}

// Run implements Runner.
func (r *Recorder) Run(_ context.Context, stdin, name string, args ...string) (string, error) {
	c := Call{Cmd: strings.Join(append([]string{name}, args...), " "), Stdin: stdin}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	if r.Respond == nil {
		return "", nil
	}
	return r.Respond(c)
}

// Calls returns the calls recorded so far.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Transcript renders the calls as a shell-like script, stdin as here-docs,
// for golden files.
func (r *Recorder) Transcript() string {
	var b strings.Builder
	for _, c := range r.Calls() {
		b.WriteString("$ " + c.Cmd + "\n")
		if c.Stdin != "" {
			b.WriteString(c.Stdin)
			if !strings.HasSuffix(c.Stdin, "\n") {
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}
