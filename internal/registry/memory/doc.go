// Package memory is a mutable, in-memory registry.Source: tests use it to
// drive the control plane, and trellisd uses it to hold the merged result of
// several sources. Writers replace whole services or endpoint lists; every
// change publishes a fresh immutable registry.Snapshot and then notifies
// subscribers.
//
// Flow: (tests | source merger) -> memory.Registry -> registry.Snapshot -> translate.
package memory
