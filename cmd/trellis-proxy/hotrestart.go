package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/trellis-mesh/trellis/internal/proxy/hotrestart"
)

// hotRestartFlags are Envoy's hot restart flags. Hot restart is on when
// --restart-epoch is given (as pilot-agent always passes it, 0 on the
// first start): the process then listens for a successor, and with an
// epoch above 0 takes over from the process of the previous one. Without
// it a proxy neither listens nor connects, so that many proxies can share
// one network namespace (tests, the no-root demo) without --base-id.
type hotRestartFlags struct {
	epoch, baseID, drainS, shutdownS int
}

func (h *hotRestartFlags) register(f *pflag.FlagSet) {
	f.IntVar(&h.epoch, "restart-epoch", 0, "hot restart generation (Envoy's): 0 on the first start, N to take over the listening sockets of the running process of epoch N-1 (started with this flag); unset disables hot restart")
	f.IntVar(&h.baseID, "base-id", 0, "hot restart id: proxies of one network namespace with hot restart need distinct ones")
	f.IntVar(&h.drainS, "drain-time-s", int(hotrestart.DefaultDrainTime.Seconds()), "after a successor took over, how long (s) this process drains its connections before it closes what is left (the successor's value governs)")
	f.IntVar(&h.shutdownS, "parent-shutdown-time-s", int(hotrestart.DefaultParentShutdownTime.Seconds()), "after a successor took over, when (s) this process exits at the latest (the successor's value governs)")
}

func (h *hotRestartFlags) options(f *pflag.FlagSet) (*hotrestart.Options, error) {
	if !f.Changed("restart-epoch") {
		for _, n := range []string{"base-id", "drain-time-s", "parent-shutdown-time-s"} {
			if f.Changed(n) {
				return nil, fmt.Errorf("--%s: needs --restart-epoch (hot restart is off without it)", n)
			}
		}
		return nil, nil
	}
	switch {
	case h.epoch < 0:
		return nil, fmt.Errorf("--restart-epoch: %d is negative", h.epoch)
	case h.baseID < 0:
		return nil, fmt.Errorf("--base-id: %d is negative", h.baseID)
	case h.drainS <= 0:
		return nil, fmt.Errorf("--drain-time-s: %d must be positive", h.drainS)
	case h.shutdownS <= 0:
		return nil, fmt.Errorf("--parent-shutdown-time-s: %d must be positive", h.shutdownS)
	}
	return &hotrestart.Options{BaseID: h.baseID, Epoch: h.epoch,
		DrainTime:          secondsDuration(h.drainS),
		ParentShutdownTime: secondsDuration(h.shutdownS)}, nil
}

func secondsDuration(s int) time.Duration { return time.Duration(s) * time.Second }
