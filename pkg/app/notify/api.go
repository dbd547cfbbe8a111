package notify

import (
	"context"
	"slices"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// The notifications API over the services' wire (pkg/app/svc/rpc,
// docs/services.md): each method declared once, for the notifications node
// (Register) and the gateway's client (NewClient). docs/api.md,
// "Notifications service (stage 10)", has the JSON and the statuses.
//
// Both methods may be repeated: add is keyed by the notification's ID (a
// second add of one ID for one user writes the same entry), and list is a
// read. The service has no errors of its own beyond the wire's table.

// Name is the service's name on the wire: /v1/notifications/{method}.
const Name = "notifications"

// MaxAddUsers is the most users one add call names. The client splits a
// longer list (an author's followers) into calls of this size, which is
// safe because each call is idempotent; it keeps a call's body far under
// the server's 1 MiB limit.
const MaxAddUsers = 1000

// The methods.
var (
	// AddMethod is Service.Add.
	AddMethod = rpc.Method[AddRequest, struct{}]{Name: "add", Idempotent: true}
	// ListMethod is Service.List.
	ListMethod = rpc.Method[ListRequest, NotificationList]{Name: "list", Idempotent: true}
)

// AddRequest gives one notification to each of UserIDs.
type AddRequest struct {
	Notification Notification `json:"notification"`
	// UserIDs are 0 to MaxAddUsers user ids.
	UserIDs []string `json:"user_ids"`
}

// ListRequest asks for a user's notifications, newest first.
type ListRequest struct {
	UserID string `json:"user_id"`
	// Limit is 1 to MaxList; zero: MaxList.
	Limit int `json:"limit,omitempty"`
}

// NotificationList is List's answer.
type NotificationList struct {
	Notifications []Notification `json:"notifications"`
}

// Register serves s's methods on server.
func Register(server *rpc.Server, s *Service) {
	rpc.Handle(server, AddMethod, func(ctx context.Context, req AddRequest) (struct{}, error) {
		if err := checkAdd(req); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.Add(ctx, req.Notification, req.UserIDs...)
	})
	rpc.Handle(server, ListMethod, func(ctx context.Context, req ListRequest) (NotificationList, error) {
		switch {
		case !ids.Valid(req.UserID):
			return NotificationList{}, svc.Invalid("user_id", "%q is not a user id", req.UserID)
		case req.Limit < 0 || req.Limit > MaxList:
			return NotificationList{}, svc.Invalid("limit", "must be 1 to %d (0: %d)", MaxList, MaxList)
		}
		ns, err := s.List(ctx, req.UserID, req.Limit)
		if ns == nil {
			ns = []Notification{}
		}
		return NotificationList{Notifications: ns}, err
	})
}

// checkAdd refuses an add the store's keys (user id/notification id) could
// not hold as meant, or that the app never makes.
func checkAdd(req AddRequest) error {
	n := req.Notification
	switch {
	case !ids.Valid(n.ID):
		return svc.Invalid("notification.id", "%q is not an id: a notification's id is time-ordered and keys it", n.ID)
	case n.Kind != KindComment && n.Kind != KindPost:
		return svc.Invalid("notification.kind", "%q is not %q or %q", n.Kind, KindComment, KindPost)
	case len(req.UserIDs) > MaxAddUsers:
		return svc.Invalid("user_ids", "%d users: at most %d per call", len(req.UserIDs), MaxAddUsers)
	}
	for _, u := range req.UserIDs {
		if !ids.Valid(u) {
			return svc.Invalid("user_ids", "%q is not a user id", u)
		}
	}
	return nil
}

// Client is the notifications service over the wire, with the methods of
// the in-process Service (the app's Notifications interface).
type Client struct{ c *rpc.Client }

// NewClient returns the notifications service called through c, an rpc
// client of service Name.
func NewClient(c *rpc.Client) *Client { return &Client{c: c} }

// Add gives n to each user, in calls of at most MaxAddUsers users. It is
// idempotent by n.ID, so a call that fails half way is made whole by
// calling Add again with the same n.
func (c *Client) Add(ctx context.Context, n Notification, userIDs ...string) error {
	for chunk := range slices.Chunk(userIDs, MaxAddUsers) {
		if _, err := rpc.Call(ctx, c.c, AddMethod, AddRequest{Notification: n, UserIDs: chunk}); err != nil {
			return err
		}
	}
	return nil
}

// List returns a user's notifications, newest first: at most limit of
// them, and never more than MaxList (limit zero or less: MaxList), as
// in-process.
func (c *Client) List(ctx context.Context, userID string, limit int) ([]Notification, error) {
	if limit <= 0 || limit > MaxList {
		limit = MaxList
	}
	res, err := rpc.Call(ctx, c.c, ListMethod, ListRequest{UserID: userID, Limit: limit})
	if err != nil {
		return nil, err
	}
	return res.Notifications, nil
}
