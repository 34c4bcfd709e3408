// Package envoyext links in the Envoy extension messages that Trellis's
// xDS contract (docs/xds-contract.md) carries inside google.protobuf.Any
// fields (typed_config, typed_per_filter_config,
// typed_extension_protocol_options, transport sockets, access loggers),
// so that protojson and anypb resolve them wherever a bootstrap file, an
// xDS resource or a /config_dump is decoded or rendered. It is the one
// list of those types: the proxy (through its bootstrap package) and the
// CLI import it for its side effect. Which of them the proxy implements is
// decided by their compilers (package proxy/filter for HTTP filters).
package envoyext
