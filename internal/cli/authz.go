package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellis-mesh/trellis/internal/proxy/admin"
	"github.com/trellis-mesh/trellis/internal/proxy/authz"
)

func newAuthzCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "Inspect the authorization a workload's proxy enforces",
	}
	cmd.AddCommand(newAuthzCheckCmd())
	return cmd
}

// requestFlags are the flags that describe a request for authz check.
var requestFlags = []string{"method", "path", "host", "header", "principal", "namespace", "source-ip", "destination-ip", "port", "sni"}

func newAuthzCheckCmd() *cobra.Command {
	f := &proxyConfigFlags{}
	var q authz.Query
	var headers []string
	var port uint16
	cmd := &cobra.Command{
		Use:   "check [POD | NAMESPACE/NAME | NAME.NAMESPACE | ADDR]",
		Short: "Would a request be allowed by a proxy, and by which AuthorizationPolicy rule",
		Long: `check asks a trellis-proxy's admin API whether a described request would be
allowed. The proxy runs it through the RBAC filters of its live listener config,
the compiled filters real requests go through: the inbound listener
(virtualInbound, 15006) unless --listener says otherwise, the filter chain of
the destination port (--port, default the listener's), the route it selects,
then the AUDIT, DENY and ALLOW filters in order. The answer names the
AuthorizationPolicy and rule that decided, or that no ALLOW policy matched.

A source principal (--principal) makes the connection mesh mTLS from that
identity; --namespace alone stands for spiffe://cluster.local/ns/NS/sa/default.
Without --source-ip, ipBlocks rules match no request.

Without any request flag, check lists the AuthorizationPolicies the proxy's
listener applies, with their action and rules.

The target is a workload of the local mesh (NAME, NAMESPACE/NAME or
NAME.NAMESPACE), an admin address (HOST:PORT), or, when omitted,
--admin-address. In Kubernetes the admin API listens on the pod's loopback:
forward it first (kubectl port-forward -n NS pod/POD 15000) and check
127.0.0.1:15000.`,
		Example: `  trellis authz check reviews.shop
  trellis authz check reviews.shop --method DELETE --path /api --principal spiffe://cluster.local/ns/shop/sa/front
  trellis authz check 127.0.0.1:15000 --namespace foo --header x-token=blocked --port 8080 -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if f.output != "short" && f.output != "json" {
				return fmt.Errorf("--output %q: use short or json", f.output)
			}
			for _, h := range headers {
				name, value, ok := strings.Cut(h, "=")
				if !ok || strings.TrimSpace(name) == "" {
					return fmt.Errorf("--header %q: use NAME=VALUE", h)
				}
				q.Headers = append(q.Headers, authz.Header{Name: name, Value: value})
			}
			q.Port = uint32(port)
			if len(args) == 1 {
				if ns, name, ok := strings.Cut(args[0], "/"); ok {
					args = []string{name + "." + ns}
				}
			}
			t, err := resolveTarget(args, f)
			if err != nil {
				return err
			}
			request := false
			for _, n := range requestFlags {
				request = request || c.Flags().Changed(n)
			}
			w := c.OutOrStdout()
			if !request {
				path := "/debug/authz"
				if q.Listener != "" {
					path += "?listener=" + q.Listener
				}
				b, err := t.get(path)
				if err != nil {
					return err
				}
				var l authz.Listing
				if err := json.Unmarshal(b, &l); err != nil {
					return fmt.Errorf("decode /debug/authz: %w", err)
				}
				if f.output == "json" {
					return writeIndented(w, l)
				}
				printPolicies(w, l)
				return nil
			}
			b, err := t.get("/debug/authz/check?" + admin.AuthzQueryValues(q).Encode())
			if err != nil {
				return err
			}
			var a authz.Answer
			if err := json.Unmarshal(b, &a); err != nil {
				return fmt.Errorf("decode /debug/authz/check: %w", err)
			}
			if f.output == "json" {
				return writeIndented(w, a)
			}
			printAnswer(w, a)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&q.Listener, "listener", "", "listener name or port (default virtualInbound, the inbound 15006 listener)")
	fl.StringVar(&q.Method, "method", "", "request method (default GET)")
	fl.StringVar(&q.Path, "path", "", "request path, with the query (default /)")
	fl.StringVar(&q.Host, "host", "", "request host (:authority)")
	fl.StringArrayVar(&headers, "header", nil, "request header NAME=VALUE (repeatable)")
	fl.StringVar(&q.Principal, "principal", "", "source principal, spiffe://TRUST_DOMAIN/ns/NS/sa/SA (mesh mTLS)")
	fl.StringVar(&q.Namespace, "namespace", "", "source namespace")
	fl.StringVar(&q.SourceIP, "source-ip", "", "source IP address")
	fl.StringVar(&q.DestinationIP, "destination-ip", "", "destination IP address")
	fl.Uint16Var(&port, "port", 0, "destination port, which picks the inbound filter chain (default the listener's port)")
	fl.StringVar(&q.SNI, "sni", "", "TLS server name the client sends")
	fl.StringVar(&f.adminAddress, "admin-address", "127.0.0.1:15000", "the proxy's admin address when no target is given")
	fl.StringVar(&f.stateDir, "state-dir", "", "directory of the local mesh's state files (default: the local runner's)")
	fl.StringVarP(&f.output, "output", "o", "short", "output format: short or json")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
	return cmd
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// verdictLine is the answer's first line: ALLOWED or DENIED, by what.
func verdictLine(a authz.Answer) string {
	word := "DENIED"
	if a.Allowed {
		word = "ALLOWED"
	}
	if d := a.Decision; d != nil && d.Policy != nil {
		if d.Policy.Rule >= 0 {
			return fmt.Sprintf("%s by AuthorizationPolicy %s/%s (%s) rule %d", word, d.Policy.Namespace, d.Policy.Policy, d.Action, d.Policy.Rule)
		}
		return fmt.Sprintf("%s by RBAC policy %s (%s)", word, d.Policy.Name, d.Action)
	}
	return word + ": " + a.Reason
}

// printAnswer writes the verdict, then where it was decided.
func printAnswer(w io.Writer, a authz.Answer) {
	fmt.Fprintln(w, verdictLine(a))
	fmt.Fprintf(w, "  listener:     %s\n", a.Listener)
	fmt.Fprintf(w, "  filter chain: %s\n", dash(a.FilterChain))
	if a.Route != "" {
		fmt.Fprintf(w, "  route:        %s\n", a.Route)
	}
	if a.Principal != "" {
		fmt.Fprintf(w, "  principal:    %s\n", a.Principal)
	}
	if a.Details != "" {
		fmt.Fprintf(w, "  details:      %s\n", a.Details)
	}
	if len(a.Verdicts) > 0 {
		fmt.Fprintln(w, "  filters:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, v := range a.Verdicts {
			matched := "no policy matched"
			if v.Policy != nil {
				matched = "matched " + v.Policy.String()
			}
			outcome := "denied"
			if v.Allowed {
				outcome = "passed"
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", v.Filter, v.Action, matched, outcome)
		}
		tw.Flush()
	}
	for _, n := range a.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// printPolicies writes the listing as istioctl x authz check does: one
// line per policy with its action and rules.
func printPolicies(w io.Writer, l authz.Listing) {
	if len(l.Policies) == 0 && len(l.AllowNothing) == 0 {
		fmt.Fprintf(w, "No AuthorizationPolicy applies to listener %s: every request is allowed.\n", l.Listener)
		return
	}
	fmt.Fprintf(w, "AuthorizationPolicies of listener %s, in the order they are evaluated:\n", l.Listener)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tAuthorizationPolicy\tRULES")
	for _, p := range l.Policies {
		name := p.Name
		if p.Namespace != "" {
			name = p.Namespace + "/" + p.Name
		}
		rules := dash(strings.Trim(strings.Join(strings.Fields(fmt.Sprint(p.Rules)), ","), "[]"))
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Action, name, rules)
	}
	tw.Flush()
	if len(l.AllowNothing) > 0 {
		fmt.Fprintln(w, "An ALLOW filter without policies (an ALLOW policy without rules, like allow-nothing) denies every request that no DENY policy denied first.")
	}
}
