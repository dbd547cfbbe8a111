//go:build stage10wiring

package node

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/content"
	"github.com/scalestack/scalestack/pkg/app/events"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/search"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// stage10Services are issue 18's services beside payments (the table of
// docs/services.md): what each serves, publishes and consumes.
func stage10Services() []serviceSpec {
	return []serviceSpec{
		{name: accounts.Name, codes: append(slices.Clone(accounts.Codes), app.SessionCodes...), open: openUsers},
		{name: content.Name, open: openContent},
		{name: search.Name, open: openSearch},
		{name: notify.Name, open: openNotifications},
	}
}

// Users: accounts (users, follows, badges) and the sessions the gateways
// keep, over the users group. Sign-up writes user.signed_up in the
// account's transaction; the badge payments sell is granted here, once per
// badge.granted event.
func openUsers(env *serviceEnv) (serviceRun, error) {
	users := accounts.New(env.store, env.n.cfg.RoleConfig.App.BcryptCost)
	out := users.Outbox()
	accounts.Register(env.server, users, out)
	tier, err := env.n.sessionTier(env)
	if err != nil {
		return serviceRun{}, err
	}
	app.RegisterSessions(env.server, app.NewSharedSessions(env.store, tier))
	return serviceRun{
		outbox:        out,
		subscriptions: []events.Subscription{{Type: svc.EventBadgeGranted, Handle: users.HandleBadgeGranted}},
		uses:          []namedRole{{"service-cache", tierRole{tier}}},
	}, nil
}

// sessionTier is the cache tier of the users service's sessions, as the
// app's shared sessions had at stage 7: over the cache nodes membership
// names (none: every session read goes to the store), sealed with the
// cluster's key, its tombstones in the users group's LSNs.
func (n *Node) sessionTier(env *serviceEnv) (*cachetier.Tier, error) {
	ac := n.appConfig()
	tc := ac.CacheTier
	tc.Nodes, tc.Group, tc.Logger = n.cacheNodes, env.group, env.log
	if len(ac.CacheMACKey) > 0 {
		tc.MACKey = ac.CacheMACKey
	}
	t, err := cachetier.New(tc)
	if err != nil {
		return nil, fmt.Errorf("sessions cache tier: %w", err)
	}
	return t, nil
}

// tierRole runs a cache tier as a role of the node.
type tierRole struct{ t *cachetier.Tier }

func (r tierRole) Open() error  { return r.t.Open() }
func (r tierRole) Close() error { return r.t.Close() }
func (r tierRole) Ready() bool  { return true }
func (r tierRole) Status() any  { return r.t.Stats() }

// Content: posts, comments and media over the content group, its events
// (post.published, post.changed, comment.added) in each write's
// transaction, nudging the publisher; it consumes its own events for the
// follow-ups that were the app's jobs (the thumbnail, the comment count).
func openContent(env *serviceEnv) (serviceRun, error) {
	d := content.Deps{
		Posts:           posts.New(env.store),
		Comments:        comments.New(env.store),
		Media:           media.New(env.store),
		Outbox:          svc.OutboxOf(env.store, content.Name),
		EventsCommitted: env.nudge,
	}
	content.Register(env.server, d)
	return serviceRun{outbox: d.Outbox, subscriptions: subscriptions(content.Handlers(d))}, nil
}

// Search: the index over the search group; it re-indexes a post on
// post.changed, reading the post as it is now from the content service.
func openSearch(env *serviceEnv) (serviceRun, error) {
	s := search.New(env.store)
	search.Register(env.server, s)
	services := env.n.remoteServices()
	services.Search = s
	h := app.NewHandlers(services, env.n.mailOutbox(), env.log)
	return serviceRun{subscriptions: subscriptions(h.EventHandlers(search.Name))}, nil
}

// Notifications: in-app notifications over the notifications group, and
// the e-mail: it tells followers of post.published (content's post, users'
// followers), a post's author of comment.added, and writes the welcome
// e-mail of user.signed_up into the node's mail outbox folder.
func openNotifications(env *serviceEnv) (serviceRun, error) {
	s := notify.New(env.store)
	notify.Register(env.server, s)
	services := env.n.remoteServices()
	services.Notifications = s
	h := app.NewHandlers(services, env.n.mailOutbox(), env.log)
	return serviceRun{subscriptions: subscriptions(h.EventHandlers(notify.Name))}, nil
}

// subscriptions turns a service's handlers by event type into the
// subscriber's list, by type.
func subscriptions(handlers map[string]func(context.Context, svc.Event) error) []events.Subscription {
	var out []events.Subscription
	for _, typ := range slices.Sorted(maps.Keys(handlers)) {
		out = append(out, events.Subscription{Type: typ, Handle: handlers[typ]})
	}
	return out
}
