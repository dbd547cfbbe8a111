//go:build !stage10wiring

package node

import "github.com/scalestack/scalestack/pkg/app"

// Without -tags stage10wiring the services' clients (built on other
// branches) are not in this build: the app and the worker run the
// services in-process, as at stages 1 to 9. gateway.go is the wiring.

func (n *Node) appRemote() bool { return false }

func (n *Node) remoteServices() app.Services {
	panic("node: remote services are not in this build (-tags stage10wiring)")
}

func (n *Node) remoteSessions() app.Sessions {
	panic("node: remote services are not in this build (-tags stage10wiring)")
}
