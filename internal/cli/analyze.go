package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/config/validate"
)

func init() { register(newAnalyzeCmd) }

type analyzeOptions struct {
	files        []string
	namespace    string
	domainSuffix string
	output       string
}

func newAnalyzeCmd() *cobra.Command {
	o := &analyzeOptions{}
	cmd := &cobra.Command{
		Use:   "analyze [-f FILE|DIR]... [FILE|DIR]...",
		Short: "Check Istio configuration files offline for errors and likely mistakes",
		Long: `analyze parses and validates Istio configuration files (networking.istio.io and
security.istio.io resources, with any Kubernetes Services beside them) without a
running control plane, as "istioctl analyze" does. Errors make the resources
unusable; warnings point at likely mistakes (a subset no DestinationRule defines,
weights not adding up to 100, a host that matches no Service or ServiceEntry).
Security resources (PeerAuthentication, AuthorizationPolicy,
RequestAuthentication) that Trellis does not enforce yet are reported as
errors naming the resource. Directories are read recursively (*.yaml, *.yml,
*.json). The exit status is non-zero when there are errors.`,
		Example: `  trellis analyze -f bookinfo/networking/
  trellis analyze -f virtual-service.yaml -f destination-rule.yaml --namespace istio-demo
  kubectl get vs,dr -A -o yaml | trellis analyze -f -`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.files = append(o.files, args...)
			return runAnalyze(cmd.OutOrStdout(), cmd.InOrStdin(), o)
		},
	}
	cmd.Flags().StringArrayVarP(&o.files, "filename", "f", nil, "file or directory to analyze, or - for standard input (repeatable)")
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "default", "namespace for objects that do not name one")
	cmd.Flags().StringVar(&o.domainSuffix, "domain-suffix", validate.DefaultDomainSuffix, "cluster domain used to expand short host names")
	cmd.Flags().StringVarP(&o.output, "output", "o", "log", "output format: log or json")
	return cmd
}

// analysis is what analyze found in a set of files.
type analysis struct {
	files  []string
	result validate.Result
}

func runAnalyze(w io.Writer, stdin io.Reader, o *analyzeOptions) error {
	if len(o.files) == 0 {
		return errors.New("analyze: no input; pass -f FILE or -f DIR")
	}
	if o.output != "log" && o.output != "json" {
		return fmt.Errorf("analyze: --output %q: want log or json", o.output)
	}
	a, err := analyzeFiles(o.files, o.namespace, o.domainSuffix, stdin)
	if err != nil {
		return err
	}
	nerr, nwarn := len(a.result.Errors), len(a.result.Warnings)
	if o.output == "json" {
		if err := writeAnalysisJSON(w, a); err != nil {
			return err
		}
	} else {
		for _, is := range a.result.Errors {
			fmt.Fprintln(w, formatIssue("Error", is))
		}
		for _, is := range a.result.Warnings {
			fmt.Fprintln(w, formatIssue("Warning", is))
		}
		switch {
		case nerr == 0 && nwarn == 0:
			fmt.Fprintf(w, "\u2714 No validation issues found when analyzing %s.\n", describeInputs(o.files, len(a.files)))
		default:
			fmt.Fprintf(w, "Found %s and %s when analyzing %s.\n", plural(nerr, "error"), plural(nwarn, "warning"), describeInputs(o.files, len(a.files)))
		}
	}
	if nerr > 0 {
		return fmt.Errorf("analyze: %s found", plural(nerr, "error"))
	}
	return nil
}

func formatIssue(level string, is validate.Issue) string {
	var where []string
	if is.Resource != "" {
		where = append(where, is.Resource)
	}
	if is.Source != "" {
		where = append(where, is.Source)
	}
	var b strings.Builder
	b.WriteString(level)
	if len(where) > 0 {
		b.WriteString(" (" + strings.Join(where, " ") + ")")
	}
	b.WriteString(" ")
	if is.Field != "" {
		b.WriteString(is.Field + ": ")
	}
	b.WriteString(is.Message)
	return b.String()
}

func writeAnalysisJSON(w io.Writer, a *analysis) error {
	type item struct {
		Level    string `json:"level"`
		Source   string `json:"source,omitempty"`
		Resource string `json:"resource,omitempty"`
		Field    string `json:"field,omitempty"`
		Message  string `json:"message"`
	}
	out := []item{}
	for _, is := range a.result.Errors {
		out = append(out, item{"Error", is.Source, is.Resource, is.Field, is.Message})
	}
	for _, is := range a.result.Warnings {
		out = append(out, item{"Warning", is.Source, is.Resource, is.Field, is.Message})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func describeInputs(inputs []string, nfiles int) string {
	return fmt.Sprintf("%s (%s)", strings.Join(inputs, ", "), plural(nfiles, "file"))
}

// analyzeFiles reads every input (files, directories walked recursively, or
// "-" for stdin), validates each resource, and checks them together.
func analyzeFiles(inputs []string, namespace, domainSuffix string, stdin io.Reader) (*analysis, error) {
	a := &analysis{}
	for _, in := range inputs {
		fs, err := configFiles(in)
		if err != nil {
			return nil, err
		}
		a.files = append(a.files, fs...)
	}
	var all []*config.Resource
	var kube []*config.KubeObject
	defined := map[config.Key]*config.Resource{}
	for _, f := range a.files {
		var data []byte
		var err error
		name := filepath.ToSlash(f)
		if f == "-" {
			if stdin == nil {
				return nil, errors.New("analyze: no standard input")
			}
			data, err = io.ReadAll(stdin)
			stdin, name = nil, "stdin"
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return nil, fmt.Errorf("analyze: %w", err)
		}
		res, err := config.ParseWithOptions(data, name, config.ParseOptions{DefaultNamespace: namespace})
		if err != nil {
			return nil, fmt.Errorf("analyze: %s: %w", f, err)
		}
		for _, e := range res.Errors {
			var is *config.Issue
			if errors.As(e, &is) {
				a.result.Errors = append(a.result.Errors, *is)
			} else {
				a.result.Errors = append(a.result.Errors, validate.Issue{Source: f, Message: e.Error()})
			}
		}
		for _, r := range res.Rejected {
			// Already in error; report their other problems too.
			a.result.Errors = append(a.result.Errors, validate.Resource(r).Errors...)
		}
		for _, r := range res.Resources {
			a.result.Merge(validate.Resource(r))
			if prev, dup := defined[r.Key()]; dup {
				a.result.Warnings = append(a.result.Warnings, validate.Issue{Source: r.Source, Resource: r.Display(), Field: "metadata.name",
					Message: fmt.Sprintf("also defined in %s; this later definition replaces it", prev.Source)})
			}
			defined[r.Key()] = r
		}
		all = append(all, res.Resources...)
		kube = append(kube, res.Kube...)
	}
	snap := config.NewSnapshot(all)
	hosts := validate.HostsFromConfig(snap, kube, domainSuffix)
	a.result.Merge(validate.SnapshotWithOptions(snap, hosts, validate.SnapshotOptions{DomainSuffix: domainSuffix}))
	// A resource Trellis would accept but not enforce is an error to the
	// user: analyze must not answer "no issues" for a policy that does
	// nothing.
	a.result.Errors = append(a.result.Errors, a.result.NotEnforced...)
	a.result.NotEnforced = nil
	a.result.Sort()
	return a, nil
}

// configFiles lists the YAML/JSON files an input names: the file itself, or
// every *.yaml, *.yml and *.json under a directory, sorted.
func configFiles(in string) ([]string, error) {
	if in == "-" {
		return []string{"-"}, nil
	}
	fi, err := os.Stat(in)
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	if !fi.IsDir() {
		return []string{in}, nil
	}
	var out []string
	err = filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != in && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	sort.Strings(out)
	return out, nil
}
