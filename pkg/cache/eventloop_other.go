//go:build !linux

package cache

import "net"

// Event loops use epoll and exist on Linux only; elsewhere Config.Validate
// refuses EventLoops > 0 and every connection gets its own goroutine.

type eventLoop struct{}

func eventLoopsSupported() bool { return false }

func newEventLoop(*Server) (*eventLoop, error) { panic("cache: event loops need Linux") }

func (*eventLoop) run()      {}
func (*eventLoop) wake()     {}
func (*eventLoop) closeFDs() {}

func (s *Server) acceptRaw(net.Listener, []*eventLoop) { s.wg.Done() }
