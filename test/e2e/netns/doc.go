// Package netns holds the end-to-end tests of the local mesh: the real
// trellis, trellisd and trellis-proxy binaries, built once, running in
// network namespaces with iptables interception that the tests create and
// remove. They need root and skip without it.
package netns
