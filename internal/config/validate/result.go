package validate

import (
	"fmt"
	"sort"

	"github.com/trellis-mesh/trellis/internal/config"
)

// Issue is one problem: source, resource ("Kind ns/name"), field path and
// message. It is the same type the parser reports.
type Issue = config.Issue

// Path is a field path builder ("spec.http[0].route[1].weight").
type Path = config.Path

// Result holds what validation found. A resource with any Errors must be
// rejected; Warnings are reported but do not block it.
//
// NotEnforced are error-level findings about resources that are valid but
// whose kind Trellis does not enforce yet (see NotEnforced): every surface
// reports them as errors (`trellis analyze` fails, the validating webhook
// denies), while the file watcher and the Kubernetes source keep the
// resource and the rest of the config serving, so the finding stays
// visible in the log and /debug/configz.
type Result struct {
	Errors      []Issue
	Warnings    []Issue
	NotEnforced []Issue
}

// OK reports whether there are no errors.
func (r Result) OK() bool { return len(r.Errors) == 0 }

// Merge appends o's issues to r.
func (r *Result) Merge(o Result) {
	r.Errors = append(r.Errors, o.Errors...)
	r.Warnings = append(r.Warnings, o.Warnings...)
	r.NotEnforced = append(r.NotEnforced, o.NotEnforced...)
}

// Sort orders issues by source, resource, field and message, for stable
// output.
func (r *Result) Sort() {
	sortIssues(r.Errors)
	sortIssues(r.Warnings)
	sortIssues(r.NotEnforced)
}

func sortIssues(is []Issue) {
	sort.SliceStable(is, func(i, j int) bool {
		a, b := is[i], is[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		if a.Resource != b.Resource {
			return a.Resource < b.Resource
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Message < b.Message
	})
}

// checker collects issues about one resource.
type checker struct {
	r   *config.Resource
	res Result
}

func newChecker(r *config.Resource) *checker { return &checker{r: r} }

func (c *checker) issue(p Path, format string, args ...any) Issue {
	return Issue{Source: c.r.Source, Resource: c.r.Display(), Field: string(p), Message: fmt.Sprintf(format, args...)}
}

func (c *checker) errorf(p Path, format string, args ...any) {
	c.res.Errors = append(c.res.Errors, c.issue(p, format, args...))
}

func (c *checker) warnf(p Path, format string, args ...any) {
	c.res.Warnings = append(c.res.Warnings, c.issue(p, format, args...))
}
