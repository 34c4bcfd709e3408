package shift

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// State is where the controller sends the traffic.
type State int

const (
	// Unknown is the state before the first rate outside the band
	// [Down, Up]; the controller has not written anything yet.
	Unknown State = iota
	// Natural sends all traffic to the natural subset.
	Natural
	// Burst sends all traffic to the burst subset.
	Burst
)

func (s State) String() string {
	switch s {
	case Natural:
		return "natural"
	case Burst:
		return "burst"
	}
	return "unknown"
}

// Sampler reads the current request rate in requests per second.
type Sampler interface {
	Rate(ctx context.Context) (float64, error)
}

// SamplerFunc adapts a function to Sampler.
type SamplerFunc func(ctx context.Context) (float64, error)

// Rate calls f.
func (f SamplerFunc) Rate(ctx context.Context) (float64, error) { return f(ctx) }

// Applier routes all of a VirtualService's traffic to one subset. changed
// is false when the object already did.
type Applier interface {
	Apply(ctx context.Context, vs Ref, subset string) (changed bool, err error)
}

// Options configure a Controller.
type Options struct {
	// Sampler supplies the rate; see NewPrometheusSampler.
	Sampler Sampler
	// Up: above this rate (req/s) the controller shifts to burst.
	Up float64
	// Down: below this rate it shifts back to natural. Must be <= Up.
	Down float64
	// Interval between samples in Run; default 1 s (as the seed's ticker).
	Interval time.Duration
	// VirtualService is the object to rewrite.
	VirtualService Ref
	// BurstSubset gets 100 % of the traffic in the burst state, NaturalSubset
	// in the natural state.
	BurstSubset   string
	NaturalSubset string
	Applier       Applier
	// Now is the clock stamped on decisions; default time.Now.
	Now func() time.Time
	// OnDecision, if set, is called after every sample (Changed says
	// whether the state moved); errors are reported here too.
	OnDecision func(Decision)
}

// Decision is the outcome of one sample.
type Decision struct {
	Time     time.Time
	Rate     float64
	From, To State
	// Changed is true when the state moved (and the applier succeeded).
	Changed bool
	// Wrote is true when the applier had to modify the VirtualService.
	Wrote bool
	// Err is a sampling or apply error; the state is then unchanged.
	Err  error
	opts *Options
}

// String renders the decision the way `trellis shift` prints it.
func (d Decision) String() string {
	if d.Err != nil {
		return fmt.Sprintf("error: %v", d.Err)
	}
	o := d.opts
	switch {
	case d.Changed && d.To == Burst:
		return fmt.Sprintf("rate %.1f req/s > %g: shifting %s to %s (100%%)", d.Rate, o.Up, o.VirtualService.Name, o.BurstSubset)
	case d.Changed && d.To == Natural:
		return fmt.Sprintf("rate %.1f req/s < %g: shifting %s to %s (100%%)", d.Rate, o.Down, o.VirtualService.Name, o.NaturalSubset)
	}
	return fmt.Sprintf("rate %.1f req/s: staying %s", d.Rate, d.To)
}

// Controller is the hysteresis loop. It is not safe for concurrent Step
// calls.
type Controller struct {
	opts  Options
	state State
}

// New checks the options and returns a controller in the Unknown state.
func New(o Options) (*Controller, error) {
	var errs []error
	if o.Sampler == nil {
		errs = append(errs, errors.New("sampler: required (a Prometheus URL)"))
	}
	if o.Applier == nil {
		errs = append(errs, errors.New("applier: required (--config-dir or --kube)"))
	}
	if o.Up <= 0 {
		errs = append(errs, fmt.Errorf("up: got %g, want a rate > 0 req/s", o.Up))
	}
	if o.Down < 0 || o.Down > o.Up {
		errs = append(errs, fmt.Errorf("down: got %g, want 0 <= down <= up (%g)", o.Down, o.Up))
	}
	if o.VirtualService.Name == "" || o.VirtualService.Namespace == "" {
		errs = append(errs, errors.New("virtual service: want namespace/name"))
	}
	if o.BurstSubset == "" || o.NaturalSubset == "" || o.BurstSubset == o.NaturalSubset {
		errs = append(errs, fmt.Errorf("subsets: got burst %q, natural %q; want two different subset names", o.BurstSubset, o.NaturalSubset))
	}
	if o.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval: got %s, want > 0", o.Interval))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("shift: %w", err)
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Controller{opts: o}, nil
}

// State returns the current state.
func (c *Controller) State() State { return c.state }

// next is the hysteresis rule: strictly above Up means burst, strictly
// below Down means natural, anything else keeps the current state.
func (c *Controller) next(rate float64) State {
	switch {
	case rate > c.opts.Up:
		return Burst
	case rate < c.opts.Down:
		return Natural
	}
	return c.state
}

// Step takes one sample and acts on it.
func (c *Controller) Step(ctx context.Context) Decision {
	d := Decision{Time: c.opts.Now(), From: c.state, To: c.state, opts: &c.opts}
	rate, err := c.opts.Sampler.Rate(ctx)
	if err != nil {
		d.Err = fmt.Errorf("sample rate: %w", err)
		return d
	}
	d.Rate = rate
	want := c.next(rate)
	if want != c.state {
		subset := c.opts.NaturalSubset
		if want == Burst {
			subset = c.opts.BurstSubset
		}
		wrote, err := c.opts.Applier.Apply(ctx, c.opts.VirtualService, subset)
		if err != nil {
			d.Err = fmt.Errorf("shift %s to %s: %w", c.opts.VirtualService, subset, err)
			return d
		}
		c.state = want
		d.To, d.Changed, d.Wrote = want, true, wrote
	}
	return d
}

// Run samples every Interval until ctx ends, then returns nil.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		d := c.Step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if c.opts.OnDecision != nil {
			c.opts.OnDecision(d)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
