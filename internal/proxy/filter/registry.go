package filter

// builders is the registry of the HTTP filters trellis-proxy implements,
// matched by the type URL of an http_filters entry's typed_config (by name
// when it has none) and of a typed_per_filter_config entry. Adding a
// filter takes one file (its Builder, config compilation and Decode) and
// one line here; docs/xds-contract.md lists the entries.
var builders = []*Builder{
	fault,
	jwtAuthn,
	rbac,
	cors,
	router,
}
