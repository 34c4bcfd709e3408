package demo

import (
	"context"
	"fmt"
	"math"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/trellis-mesh/trellis/internal/demoapp"
)

// convergeTimeout bounds the wait for a config change to reach the proxies.
const convergeTimeout = 45 * time.Second

func (d *demo) convergeLimit() time.Duration {
	if d.convergeTimeout > 0 {
		return d.convergeTimeout
	}
	return convergeTimeout
}

func (d *demo) scenarios(ctx context.Context) error {
	n := d.opts.Calls
	total := 6
	step := 0
	next := func(title string) {
		step++
		d.printf("")
		d.printf("[%d/%d] %s", step, total, title)
	}

	next("no mesh rules: curl bill-service:9999 from the front end")
	if err := d.converge(ctx, "both versions answer", 20, "", billURL, func(r demoapp.Result) bool {
		return r.Answers[BillV1] > 0 && r.Answers[BillV2] > 0 && r.Answers[BillV1]+r.Answers[BillV2] == r.Calls
	}); err != nil {
		return err
	}
	if err := d.measure(ctx, "even", "even split without rules", n, 10, "", billURL, BillV1, BillV2); err != nil {
		return err
	}

	next("kubectl apply -f destination-rule.yaml -f virtual-service.yaml (v1 90 / v2 10)")
	if err := d.apply("destination-rule.yaml"); err != nil {
		return err
	}
	if err := d.apply("virtual-service.yaml"); err != nil {
		return err
	}
	if err := d.converge(ctx, "the 90/10 split", 100, "", billURL, func(r demoapp.Result) bool {
		return r.Percent(BillV2) <= 25 && r.Percent(BillV1) >= 65 && r.Answers[BillV1]+r.Answers[BillV2] == r.Calls
	}); err != nil {
		return err
	}
	if err := d.measure(ctx, "weighted", "weighted 90/10", n, 10, "", billURL, BillV1, BillV2); err != nil {
		return err
	}

	next("kubectl apply -f canary.yaml (header user: jesse -> v2, everyone else -> v1)")
	if err := d.apply("canary.yaml"); err != nil {
		return err
	}
	if err := d.converge(ctx, "the header route", 10, "user: jesse", canaryURL, func(r demoapp.Result) bool {
		return r.Answers[CanaryV2] == r.Calls
	}); err != nil {
		return err
	}
	if err := d.converge(ctx, "the default route", 10, "", canaryURL, func(r demoapp.Result) bool {
		return r.Answers[CanaryV1] == r.Calls
	}); err != nil {
		return err
	}
	if err := d.measure(ctx, "canary-jesse", "with header user: jesse", n, 10, "user: jesse", canaryURL, CanaryV1, CanaryV2); err != nil {
		return err
	}
	if err := d.measure(ctx, "canary-others", "without the header", n, 10, "", canaryURL, CanaryV1, CanaryV2); err != nil {
		return err
	}

	next("kubectl apply -f fault-injection.yaml (jesse delayed 5s; 50% of the others aborted with 500)")
	if err := d.apply("fault-injection.yaml"); err != nil {
		return err
	}
	if err := d.converge(ctx, "the abort fault", 20, "", canaryURL, func(r demoapp.Result) bool {
		return r.Answers[Abort] > 0
	}); err != nil {
		return err
	}
	dc := d.opts.DelayCalls
	if err := d.measure(ctx, "fault-delay", fmt.Sprintf("user: jesse, %d concurrent calls", dc), dc, dc, "user: jesse", canaryURL, CanaryV1, CanaryV2); err != nil {
		return err
	}
	if err := d.measure(ctx, "fault-abort", "without the header", n, 10, "", canaryURL, CanaryV1, Abort); err != nil {
		return err
	}

	next("kubectl delete -f virtual-service.yaml (back to the even split)")
	if err := d.remove("virtual-service.yaml"); err != nil {
		return err
	}
	if err := d.converge(ctx, "the even split", 100, "", billURL, func(r demoapp.Result) bool {
		return r.Percent(BillV2) >= 30 && r.Percent(BillV1) >= 30
	}); err != nil {
		return err
	}
	if err := d.measure(ctx, "even-again", "even split after deleting the VirtualService", n, 10, "", billURL, BillV1, BillV2); err != nil {
		return err
	}
	step = total - 1
	next("summary")
	return nil
}

// converge probes until ok holds: config changes reach the proxies
// asynchronously, and the measured steps must only see the new config.
func (d *demo) converge(ctx context.Context, what string, calls int, header, url string, ok func(demoapp.Result) bool) error {
	d.printf("   waiting for %s to take effect", what)
	deadline := time.Now().Add(d.convergeLimit())
	var last demoapp.Result
	var lastErr error
	for {
		res, err := d.load(ctx, calls, 10, header, url)
		if err == nil && ok(res) {
			return nil
		}
		last, lastErr = res, err
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				return fmt.Errorf("%s: %w: last probe failed: %v", what, errNotConverged, lastErr)
			}
			return fmt.Errorf("%s: %w within %s: last probe of %s answered %v", what, errNotConverged, d.convergeLimit(), url, last.Answers)
		}
		time.Sleep(d.convergeLimit() / 150)
	}
}

func (d *demo) measure(ctx context.Context, name, title string, calls, conc int, header, url string, order ...string) error {
	d.printf("   %d calls to %s%s ...", calls, url, headerNote(header))
	res, err := d.load(ctx, calls, conc, header, url)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d.report.Steps = append(d.report.Steps, Step{Name: name, Title: title, URL: url, Header: header, Result: res})
	d.table(title, res, order)
	return nil
}

func headerNote(h string) string {
	if h == "" {
		return ""
	}
	return " with " + h
}

// table prints who answered, with shares and latency.
func (d *demo) table(title string, r demoapp.Result, order []string) {
	answers := append([]string(nil), order...)
	var rest []string
	for a := range r.Answers {
		if !contains(answers, a) {
			rest = append(rest, a)
		}
	}
	sort.Strings(rest)
	answers = append(answers, rest...)
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(d.out, "   %s\n", title)
	fmt.Fprintf(tw, "\tanswer\tcalls\t%%\t\n")
	for _, a := range answers {
		fmt.Fprintf(tw, "\t%s\t%d\t%.1f\t\n", a, r.Answers[a], r.Percent(a))
	}
	tw.Flush()
	fmt.Fprintf(d.out, "   latency p50 %s  p99 %s  max %s  over %d calls\n", ms(r.P50ms), ms(r.P99ms), ms(r.MaxMs), r.Calls)
}

func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// summary checks every step against what the seeds show and prints it.
func (d *demo) summary() {
	var checks []Check
	within := func(name string, step, answer string, want, tol float64) {
		s := d.report.Step(step)
		if s == nil {
			return
		}
		got := s.Result.Percent(answer)
		checks = append(checks, Check{Name: name, Want: fmt.Sprintf("%g%% ±%g", want, tol), Got: fmt.Sprintf("%.1f%%", got), OK: math.Abs(got-want) <= tol})
	}
	within("no rules: bill-service v1 share", "even", BillV1, 50, 8)
	within("no rules: bill-service v2 share", "even", BillV2, 50, 8)
	within("90/10: bill-service v1 share", "weighted", BillV1, 90, 3)
	within("90/10: bill-service v2 share", "weighted", BillV2, 10, 3)
	within("user: jesse -> canary v2", "canary-jesse", CanaryV2, 100, 0)
	within("others -> canary v1", "canary-others", CanaryV1, 100, 0)
	if s := d.report.Step("fault-delay"); s != nil {
		minS := s.Result.MinMs / 1000
		checks = append(checks, Check{Name: "fault: jesse's calls delayed", Want: ">= 5 s each, answered by v2",
			Got: fmt.Sprintf("min %.2f s, %.0f%% v2", minS, s.Result.Percent(CanaryV2)), OK: minS >= 5 && s.Result.Percent(CanaryV2) == 100})
	}
	within("fault: others aborted with HTTP 500", "fault-abort", Abort, 50, 8)
	if s := d.report.Step("fault-abort"); s != nil {
		rest := s.Result.Calls - s.Result.Answers[Abort]
		got := 0.0
		if rest > 0 {
			got = 100 * float64(s.Result.Answers[CanaryV1]) / float64(rest)
		}
		checks = append(checks, Check{Name: "fault: the rest answered by v1", Want: "100%",
			Got: fmt.Sprintf("%.1f%%", got), OK: rest > 0 && s.Result.Answers[CanaryV1] == rest})
	}
	within("VirtualService deleted: v1 share", "even-again", BillV1, 50, 8)
	d.report.Checks = checks
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "   check\twant\tgot\tok\n")
	for _, c := range checks {
		ok := "yes"
		if !c.OK {
			ok = "NO"
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\n", c.Name, c.Want, c.Got, ok)
	}
	tw.Flush()
}
