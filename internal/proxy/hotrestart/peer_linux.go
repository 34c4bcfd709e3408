//go:build linux

package hotrestart

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// samePeer admits a peer of this process's uid, or root.
func samePeer(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("peer pid %d runs as uid %d, this proxy as uid %d", cred.Pid, cred.Uid, os.Geteuid())
	}
	return nil
}
