package node

import (
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/content"
	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/search"
)

// The gateway (stage 10, --app-services remote): the app's and the
// worker's services are the node's rpc clients of the service nodes found
// in membership (instances.go), the sessions are the users service's.

// appRemote reports whether the app and worker roles call the service
// nodes rather than run the services in-process.
func (n *Node) appRemote() bool { return n.cfg.RoleConfig.App.RemoteServices() }

// remoteServices returns the blog's services as clients of the service
// nodes, one rpc client per service, shared by every role of the node.
func (n *Node) remoteServices() app.Services {
	return app.Services{
		Accounts:      accounts.NewClient(n.serviceClient(accounts.Name)),
		Posts:         content.NewPosts(n.serviceClient(content.Name)),
		Comments:      content.NewComments(n.serviceClient(content.Name)),
		Media:         content.NewMedia(n.serviceClient(content.Name)),
		Search:        search.NewClient(n.serviceClient(search.Name)),
		Notifications: notify.NewClient(n.serviceClient(notify.Name)),
		Payments:      payments.NewClient(n.serviceClient(payments.Name)),
	}
}

// remoteSessions returns the users service's sessions.
func (n *Node) remoteSessions() app.Sessions {
	return app.NewSessionsClient(n.serviceClient(accounts.Name))
}
