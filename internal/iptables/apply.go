package iptables

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Mode selects the iptables backend.
type Mode string

const (
	ModeAuto   Mode = "auto"   // whatever `iptables --version` reports
	ModeNFT    Mode = "nft"    // iptables-nft
	ModeLegacy Mode = "legacy" // iptables-legacy
)

// ParseMode checks a --iptables-mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeNFT, ModeLegacy:
		return m, nil
	}
	return "", fmt.Errorf("iptables-mode: got %q, want auto, nft or legacy", s)
}

// Errors for the kernel features interception needs; match with errors.Is.
var (
	ErrNoNATTable   = errors.New("the kernel has no iptables nat table")
	ErrNoOwnerMatch = errors.New("the kernel has no iptables owner match")
	ErrNoRedirect   = errors.New("the kernel has no iptables REDIRECT target")
	ErrNotRoot      = errors.New("changing iptables needs root (CAP_NET_ADMIN)")
)

// moduleHint is the fix seed 000 needed when the init container failed
// with "unable to initialize table 'nat'".
const moduleHint = "load the kernel modules with `modprobe -a br_netfilter nf_nat xt_REDIRECT xt_owner iptable_nat iptable_mangle iptable_filter` " +
	"and list them in /etc/modules-load.d/trellis-iptables.conf so they load at boot"

// Backend names the binaries of one iptables flavour.
type Backend struct {
	Name    Mode   // nft or legacy
	Save    string // iptables-nft-save, ...
	Restore string
}

// Applier installs and removes the rules through Runner.
type Applier struct {
	Runner Runner
	Mode   Mode
	// LookPath reports whether a binary exists; nil means exec.LookPath.
	LookPath func(string) bool
}

// Detect picks the backend: the one Mode names, or for ModeAuto the one
// `iptables --version` reports. It prefers the flavour-specific binaries
// (iptables-nft-restore) and falls back to the generic ones.
func (a *Applier) Detect(ctx context.Context) (Backend, error) {
	mode := a.Mode
	if mode == "" || mode == ModeAuto {
		out, err := a.Runner.Run(ctx, "", "iptables", "--version")
		if err != nil {
			return Backend{}, fmt.Errorf("detect iptables backend (is the iptables package installed?): %w: %s", err, strings.TrimSpace(out))
		}
		switch {
		case strings.Contains(out, "nf_tables"):
			mode = ModeNFT
		default:
			mode = ModeLegacy
		}
	}
	b := Backend{Name: mode, Save: "iptables-" + string(mode) + "-save", Restore: "iptables-" + string(mode) + "-restore"}
	if !a.look(b.Restore) || !a.look(b.Save) {
		b.Save, b.Restore = "iptables-save", "iptables-restore"
	}
	return b, nil
}

// Apply installs the rules for opts. Rules left by an earlier run are
// removed first, so re-running gives the same rules once.
func (a *Applier) Apply(ctx context.Context, opts Options) error {
	rs, err := Rules(opts)
	if err != nil {
		return err
	}
	b, err := a.Detect(ctx)
	if err != nil {
		return err
	}
	if err := a.cleanup(ctx, b); err != nil {
		return err
	}
	a.cleanupOther(ctx, b)
	if out, err := a.Runner.Run(ctx, rs.Restore(), b.Restore, "--noflush"); err != nil {
		return fmt.Errorf("install nat rules with %s: %w", b.Restore, classify(out, err))
	}
	return nil
}

// Cleanup removes what Apply added: the jumps from PREROUTING and OUTPUT
// into the ISTIO_* chains, then those chains. Other rules stay untouched.
// Cleaning a table without Trellis rules is a no-op.
func (a *Applier) Cleanup(ctx context.Context) error {
	b, err := a.Detect(ctx)
	if err != nil {
		return err
	}
	if err := a.cleanup(ctx, b); err != nil {
		return err
	}
	a.cleanupOther(ctx, b)
	return nil
}

// cleanupOther removes Trellis rules left in the other backend (a run
// with --iptables-mode legacy on an nft system, or the reverse), so the
// two never capture at once. Only in auto mode, only when that flavour's
// binaries exist, and best effort: its kernel tables may be absent.
func (a *Applier) cleanupOther(ctx context.Context, primary Backend) {
	if a.Mode != "" && a.Mode != ModeAuto {
		return
	}
	other := ModeLegacy
	if primary.Name == ModeLegacy {
		other = ModeNFT
	}
	b := Backend{Name: other, Save: "iptables-" + string(other) + "-save", Restore: "iptables-" + string(other) + "-restore"}
	if b.Save == primary.Save || !a.look(b.Save) || !a.look(b.Restore) {
		return
	}
	a.cleanup(ctx, b)
}

func (a *Applier) look(name string) bool {
	if a.LookPath != nil {
		return a.LookPath(name)
	}
	_, err := exec.LookPath(name)
	return err == nil
}

func (a *Applier) cleanup(ctx context.Context, b Backend) error {
	out, err := a.Runner.Run(ctx, "", b.Save, "-t", Table)
	if err != nil {
		return fmt.Errorf("read nat rules with %s: %w", b.Save, classify(out, err))
	}
	script := CleanupScript(out)
	if script == "" {
		return nil
	}
	if out, err := a.Runner.Run(ctx, script, b.Restore, "--noflush"); err != nil {
		return fmt.Errorf("remove nat rules with %s: %w", b.Restore, classify(out, err))
	}
	return nil
}

// CleanupScript turns `iptables-save -t nat` output into the
// iptables-restore input that removes Trellis's rules: each rule in a
// built-in chain that jumps to an ISTIO_* chain is deleted, then every
// ISTIO_* chain is flushed and deleted. It returns "" if there is nothing
// to remove.
func CleanupScript(save string) string {
	var dels, chains []string
	inNAT := false
	for _, line := range strings.Split(save, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			inNAT = line == "*"+Table
		case !inNAT:
		case strings.HasPrefix(line, ":"):
			if name, _, _ := strings.Cut(line[1:], " "); isOwnChain(name) {
				chains = append(chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || isOwnChain(f[1]) {
				continue
			}
			if target := jumpTarget(f); isOwnChain(target) {
				dels = append(dels, "-D "+strings.Join(f[1:], " "))
			}
		}
	}
	if len(dels) == 0 && len(chains) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("*" + Table + "\n")
	for _, d := range dels {
		b.WriteString(d + "\n")
	}
	for _, c := range chains {
		b.WriteString("-F " + c + "\n")
	}
	for _, c := range chains {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

func jumpTarget(fields []string) string {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "-j" || fields[i] == "-g" {
			return fields[i+1]
		}
	}
	return ""
}

// classify turns iptables' error output into an error that says what is
// missing and how to fix it.
func classify(out string, err error) error {
	msg := strings.TrimSpace(out)
	low := strings.ToLower(msg)
	switch {
	case strings.Contains(low, "permission denied") || strings.Contains(low, "you must be root") || strings.Contains(low, "operation not permitted"):
		return fmt.Errorf("%w: run as root or grant CAP_NET_ADMIN (iptables said: %s)", ErrNotRoot, msg)
	case strings.Contains(low, "table 'nat'") || strings.Contains(low, "table `nat'") || strings.Contains(low, "table \"nat\"") ||
		(strings.Contains(low, "nat") && strings.Contains(low, "table does not exist")):
		return fmt.Errorf("%w: %s (iptables said: %s)", ErrNoNATTable, moduleHint, msg)
	case strings.Contains(low, "owner"):
		return fmt.Errorf("%w (xt_owner), needed to exempt the proxy's uid 1337: %s (iptables said: %s)", ErrNoOwnerMatch, moduleHint, msg)
	case strings.Contains(low, "redirect"):
		return fmt.Errorf("%w (xt_REDIRECT): %s (iptables said: %s)", ErrNoRedirect, moduleHint, msg)
	}
	if msg == "" {
		return err
	}
	return fmt.Errorf("%w: %s", err, msg)
}
