package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
)

// secret is one SDS secret ready for handshakes: a certificate (for a
// tls_certificate secret) or trusted roots plus peer checks (for a
// validation_context secret).
type secret struct {
	cert  *tls.Certificate
	roots *x509.CertPool
	peer  *peerChecks // SAN, hash and SPKI checks carried by the secret; nil for none
}

// Store holds the current SDS secrets by name: those xDS sends (Apply) and
// the proxy's own (SetLocal: the workload certificate `default` and trust
// bundle `ROOTCA` the proxy obtains from the CA, which Envoy would get
// from pilot-agent's SDS). Reads are lock-free; each update publishes the
// whole set at once. The zero Store is empty and ready to use. A Store is
// safe for concurrent use.
type Store struct {
	m atomic.Pointer[map[string]*secret]

	mu         sync.Mutex // serialises updates of xds and local
	xds, local map[string]*secret
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{} }

// Apply validates every secret and, only if all are valid, replaces the
// stored set with them (a state-of-the-world update: secrets missing from
// the map are dropped). On error nothing changes and the error names the
// secret and field, for the NACK.
func (s *Store) Apply(secrets map[string]*tlsv3.Secret) error {
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	next := make(map[string]*secret, len(secrets))
	var errs []error
	for _, n := range names {
		sec, err := parseSecret(secrets[n])
		if err != nil {
			errs = append(errs, fmt.Errorf("secret %q: %w", n, err))
			continue
		}
		next[n] = sec
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.xds = next
	s.publish()
	return nil
}

// SetLocal validates the proxy's own secrets and, only if all are valid,
// replaces them. A local secret wins over an xDS one of the same name, as
// pilot-agent's SDS answers Envoy for `default` and `ROOTCA` whatever the
// control plane sends.
func (s *Store) SetLocal(secrets map[string]*tlsv3.Secret) error {
	next := make(map[string]*secret, len(secrets))
	var errs []error
	for n, sec := range secrets {
		p, err := parseSecret(sec)
		if err != nil {
			errs = append(errs, fmt.Errorf("secret %q: %w", n, err))
			continue
		}
		next[n] = p
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.local = next
	s.publish()
	return nil
}

// publish stores the union of the xDS and local secrets; s.mu is held.
func (s *Store) publish() {
	all := make(map[string]*secret, len(s.xds)+len(s.local))
	for n, sec := range s.xds {
		all[n] = sec
	}
	for n, sec := range s.local {
		all[n] = sec
	}
	s.m.Store(&all)
}

// ApplyAny decodes xDS Secret resources (as the xDS client delivers them)
// and applies them like Apply.
func (s *Store) ApplyAny(res map[string]*anypb.Any) error {
	secrets := make(map[string]*tlsv3.Secret, len(res))
	var errs []error
	for n, a := range res {
		var sec tlsv3.Secret
		if err := a.UnmarshalTo(&sec); err != nil {
			errs = append(errs, fmt.Errorf("secret %q: decode: %w", n, err))
			continue
		}
		secrets[n] = &sec
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.Apply(secrets)
}

// Names returns the names of the stored secrets, sorted.
func (s *Store) Names() []string {
	m := s.m.Load()
	if m == nil {
		return nil
	}
	names := make([]string, 0, len(*m))
	for n := range *m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Certificate returns the certificate of the tls_certificate secret name,
// or nil when there is no such secret.
func (s *Store) Certificate(name string) *tls.Certificate {
	if sec := s.get(name); sec != nil {
		return sec.cert
	}
	return nil
}

// Roots returns the trusted CAs of the validation_context secret name, or
// nil when there is no such secret.
func (s *Store) Roots(name string) *x509.CertPool {
	if sec := s.get(name); sec != nil {
		return sec.roots
	}
	return nil
}

func (s *Store) get(name string) *secret {
	if s == nil {
		return nil
	}
	m := s.m.Load()
	if m == nil {
		return nil
	}
	return (*m)[name]
}

// parseSecret validates one secret. Certificate and trusted CA parsing is
// cluster.ParseSecret's (the upstream side reads the same secrets); the
// peer checks a validation_context secret may carry are compiled here.
func parseSecret(sec *tlsv3.Secret) (*secret, error) {
	if sec == nil {
		return nil, errors.New("secret is empty")
	}
	switch {
	case sec.GetTlsCertificate() != nil:
		if err := checkFields("tls_certificate", sec.GetTlsCertificate(), tlsCertificateFields); err != nil {
			return nil, err
		}
	case sec.GetValidationContext() != nil:
		vc := sec.GetValidationContext()
		if err := checkFields("validation_context", vc, validationFields); err != nil {
			return nil, err
		}
		if vc.GetTrustedCa() == nil {
			return nil, errors.New("validation_context.trusted_ca: is required in a validation context secret")
		}
	}
	cert, roots, err := cluster.ParseSecret(sec)
	if err != nil {
		return nil, err
	}
	out := &secret{cert: cert, roots: roots}
	if vc := sec.GetValidationContext(); vc != nil {
		pc, err := compilePeerChecks("validation_context", vc)
		if err != nil {
			return nil, err
		}
		out.peer = pc
	}
	return out, nil
}
