package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries locates the programs local mode runs.
type Binaries struct {
	Trellis  string // the CLI (runs the demo apps and load clients)
	Trellisd string
	Proxy    string // trellis-proxy
}

// FindBinaries looks in dir when set, else next to the running program,
// else on PATH. Every binary must be executable by the app user and uid
// 1337, which run from it.
func FindBinaries(dir string) (Binaries, error) {
	var dirs []string
	if dir != "" {
		dirs = []string{dir}
	} else if self, err := os.Executable(); err == nil {
		dirs = []string{filepath.Dir(self)}
	}
	find := func(name string) (string, error) {
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return filepath.Abs(p)
			}
		}
		if dir == "" {
			if p, err := exec.LookPath(name); err == nil {
				return filepath.Abs(p)
			}
		}
		where := "next to this program or on PATH"
		if dir != "" {
			where = "in " + dir
		}
		return "", fmt.Errorf("%s not found %s; build it with `go build -tags grpcnotrace -o bin/ ./cmd/trellis ./cmd/trellisd ./cmd/trellis-proxy` and pass --bin-dir bin", name, where)
	}
	var b Binaries
	var errs []error
	var err error
	if b.Trellis, err = find("trellis"); err != nil {
		errs = append(errs, err)
	}
	if b.Trellisd, err = find("trellisd"); err != nil {
		errs = append(errs, err)
	}
	if b.Proxy, err = find("trellis-proxy"); err != nil {
		errs = append(errs, err)
	}
	return b, errors.Join(errs...)
}

// Runnable reports whether uid 1337 and the app user can run the binaries.
func (b Binaries) Runnable() error {
	for _, p := range []string{b.Trellis, b.Trellisd, b.Proxy} {
		if err := worldRunnable(p); err != nil {
			return err
		}
	}
	return nil
}

// Stage returns binaries that other users can run: b itself when it is
// Runnable, else copies in STATEDIR/bin-PREFIX (e.g. when they were built
// in a home directory other users cannot enter). remove deletes the copies;
// a later Stage with the same prefix replaces them.
func (b Binaries) Stage(stateDir, prefix string) (staged Binaries, remove func(), err error) {
	if b.Runnable() == nil {
		return b, func() {}, nil
	}
	dir := filepath.Join(StateDir(stateDir), "bin-"+prefix)
	remove = func() { os.RemoveAll(dir) }
	remove()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return b, remove, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return b, remove, err
	}
	cp := func(src string) (string, error) {
		dst := filepath.Join(dir, filepath.Base(src))
		in, err := os.Open(src)
		if err != nil {
			return "", err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return "", err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return "", err
		}
		return dst, out.Close()
	}
	if staged.Trellis, err = cp(b.Trellis); err != nil {
		return b, remove, err
	}
	if staged.Trellisd, err = cp(b.Trellisd); err != nil {
		return b, remove, err
	}
	if staged.Proxy, err = cp(b.Proxy); err != nil {
		return b, remove, err
	}
	if err := staged.Runnable(); err != nil {
		return b, remove, fmt.Errorf("staging the binaries in %s: %w", dir, err)
	}
	return staged, remove, nil
}

// worldRunnable checks that other users (the app's uid, 1337) can run p:
// the file is world-executable and every directory above it searchable.
func worldRunnable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o001 == 0 {
		return fmt.Errorf("%s is not executable by other users (the proxy runs as uid 1337); chmod o+rx it", p)
	}
	for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s is not searchable by other users, so uid 1337 cannot run %s; chmod o+x %s or use another --bin-dir", d, filepath.Base(p), d)
		}
	}
	return nil
}

// ExpandCommand replaces the word TRELLIS in a spec command with the
// trellis binary's path.
func (s *Spec) ExpandCommand(trellis string) {
	for i := range s.Workloads {
		for j, a := range s.Workloads[i].Command {
			if a == "TRELLIS" {
				s.Workloads[i].Command[j] = trellis
			} else {
				s.Workloads[i].Command[j] = strings.ReplaceAll(a, "${TRELLIS}", trellis)
			}
		}
	}
}
