package identity

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// TokenFile returns a Token function that re-reads path before each
// request (Kubernetes: the projected ServiceAccount token the kubelet
// rotates).
func TokenFile(path string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
}

// ReadToken reads the whole credential from r once (local mode: the pipe
// `trellis local up` hands the proxy as a descriptor) and returns a Token
// function that answers it from memory.
func ReadToken(r io.Reader) (func() (string, error), error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read the CA credential: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("the CA credential is empty")
	}
	return func() (string, error) { return tok, nil }, nil
}
