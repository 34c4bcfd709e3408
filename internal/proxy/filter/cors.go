package filter

import (
	"fmt"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
)

// Cors is a compiled CorsPolicy.
type Cors struct {
	Origins          []StringMatcher
	AllowMethods     string
	AllowHeaders     string
	ExposeHeaders    string
	MaxAge           string
	AllowCredentials bool
	// Enabled is the filter_enabled fraction (default all).
	Enabled Fraction
}

// CompileCors compiles a CorsPolicy; path names the field in errors.
func CompileCors(p *corsv3.CorsPolicy, path string) (*Cors, error) {
	c := &Cors{
		AllowMethods:     p.GetAllowMethods(),
		AllowHeaders:     p.GetAllowHeaders(),
		ExposeHeaders:    p.GetExposeHeaders(),
		MaxAge:           p.GetMaxAge(),
		AllowCredentials: p.GetAllowCredentials().GetValue(),
		Enabled:          all,
	}
	if fe := p.GetFilterEnabled(); fe != nil {
		c.Enabled = CompileFraction(fe.GetDefaultValue(), all)
	}
	for i, m := range p.GetAllowOriginStringMatch() {
		sm, err := CompileStringMatcher(m, fmt.Sprintf("%s.allow_origin_string_match[%d]", path, i))
		if err != nil {
			return nil, err
		}
		c.Origins = append(c.Origins, sm)
	}
	return c, nil
}

// AllowsOrigin reports whether origin matches one of the allowed origins.
func (c *Cors) AllowsOrigin(origin []byte) bool {
	for i := range c.Origins {
		if c.Origins[i].Match(origin) {
			return true
		}
	}
	return false
}

// Preflight returns the headers of the answer to a preflight request
// (OPTIONS with Origin and Access-Control-Request-Method) from an allowed
// origin; Envoy answers it with 200 without reaching the upstream.
func (c *Cors) Preflight(origin []byte) [][2]string {
	h := [][2]string{{"access-control-allow-origin", string(origin)}}
	if c.AllowCredentials {
		h = append(h, [2]string{"access-control-allow-credentials", "true"})
	}
	if c.AllowMethods != "" {
		h = append(h, [2]string{"access-control-allow-methods", c.AllowMethods})
	}
	if c.AllowHeaders != "" {
		h = append(h, [2]string{"access-control-allow-headers", c.AllowHeaders})
	}
	if c.MaxAge != "" {
		h = append(h, [2]string{"access-control-max-age", c.MaxAge})
	}
	return h
}

// Simple returns the headers added to a normal response for an allowed
// origin.
func (c *Cors) Simple(origin []byte) [][2]string {
	h := [][2]string{{"access-control-allow-origin", string(origin)}}
	if c.AllowCredentials {
		h = append(h, [2]string{"access-control-allow-credentials", "true"})
	}
	if c.ExposeHeaders != "" {
		h = append(h, [2]string{"access-control-expose-headers", c.ExposeHeaders})
	}
	return h
}
