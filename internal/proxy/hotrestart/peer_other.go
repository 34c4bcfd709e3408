//go:build !linux

package hotrestart

import (
	"errors"
	"net"
)

// samePeer: hot restart uses Linux's abstract unix sockets and
// SO_PEERCRED; elsewhere no successor is served.
func samePeer(*net.UnixConn) error { return errors.New("hot restart needs Linux") }
