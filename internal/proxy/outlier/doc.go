// Package outlier ejects misbehaving upstream hosts the way Envoy's outlier
// detection does: consecutive 5xx, consecutive gateway errors (502/503/504,
// and connect failures / timeouts when local-origin errors are not split),
// consecutive local-origin failures, an interval sweep that returns hosts
// after base_ejection_time × ejection count (capped by max_ejection_time),
// and max_ejection_percent (never blocking the first ejection).
//
// It sits behind the cluster package: every attempt's outcome is reported
// (Detector.Report, lock-free for the common success case) and an ejection
// flips the host's ejected flag and calls the cluster back so its balancer
// stops picking the host. The clock and randomness are injected.
package outlier
