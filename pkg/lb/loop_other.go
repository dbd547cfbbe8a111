//go:build !linux

package lb

import (
	"errors"
	"net"
)

// Event loops need epoll; elsewhere every connection has its own goroutine
// (Config.EventLoops must be 0, which is the default there).

type loop struct{}

func eventLoopsSupported() bool { return false }

func (lb *LB) startLoops() error { return errors.New("lb event loops need Linux") }

func (lb *LB) wakeLoops(force bool) {}

func (lb *LB) handToLoop(nc net.Conn) {
	nc.Close()
	lb.freeSlot()
}
