//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package lb

import "net"

// connAlive cannot peek on this platform; a dead idle connection shows up
// as a failed attempt instead.
func connAlive(net.Conn) bool { return true }
