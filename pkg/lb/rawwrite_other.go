//go:build !linux

package lb

import "net"

// rawWriter is net.Conn's own Write where raw writes are not implemented.
type rawWriter struct{ nc net.Conn }

func newRawWriter(nc net.Conn) *rawWriter { return &rawWriter{nc: nc} }

func (w *rawWriter) Write(p []byte) (int, error) { return w.nc.Write(p) }
