package accounts

import (
	"context"
	"time"

	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The users service's API over the services' wire (pkg/app/svc/rpc,
// docs/services.md): accounts and the follow graph, declared once for the
// users node (Register) and the gateway (Client, which the app uses as its
// Accounts). The same service serves the sessions (pkg/app,
// sessions_rpc.go), which live in package app. docs/api.md, "Users service
// (stage 10)", has the JSON and the statuses.
//
// Every method but sign-up may be repeated: the reads (authenticate is
// one: it checks a password and changes nothing), and follow and unfollow,
// which set an edge rather than add one. A sign-up is not: a retry after
// an answer that was lost may find the first one committed, and answers
// 409 on the handle; the client never retries it once it may have reached
// the service (rpc.ErrOutcomeUnknown).

// Name is the service's name on the wire: /v1/users/{method}. It is also
// the Source of the events the service writes and the prefix of its
// outbox's bucket (users.outbox).
const Name = "users"

// The methods.
var (
	// SignUpMethod is Service.SignUp; it commits a user.signed_up event
	// with the account (Register).
	SignUpMethod = rpc.Method[SignUpRequest, User]{Name: "sign-up"}
	// AuthenticateMethod is Service.Authenticate.
	AuthenticateMethod = rpc.Method[AuthenticateRequest, User]{Name: "authenticate", Idempotent: true}
	// UserMethod is Service.User.
	UserMethod = rpc.Method[UserRequest, User]{Name: "user", Idempotent: true}
	// UserByHandleMethod is Service.UserByHandle.
	UserByHandleMethod = rpc.Method[UserByHandleRequest, User]{Name: "user-by-handle", Idempotent: true}
	// FollowMethod is Service.Follow.
	FollowMethod = rpc.Method[FollowRequest, struct{}]{Name: "follow", Idempotent: true}
	// UnfollowMethod is Service.Unfollow.
	UnfollowMethod = rpc.Method[FollowRequest, struct{}]{Name: "unfollow", Idempotent: true}
	// IsFollowingMethod is Service.IsFollowing.
	IsFollowingMethod = rpc.Method[FollowRequest, IsFollowingResult]{Name: "is-following", Idempotent: true}
	// FollowingMethod is Service.Following.
	FollowingMethod = rpc.Method[UserRequest, IDList]{Name: "following", Idempotent: true}
	// FollowersMethod is Service.Followers.
	FollowersMethod = rpc.Method[UserRequest, IDList]{Name: "followers", Idempotent: true}
	// BadgeMethod is Service.Badge: the supporter badge the service granted
	// on a badge.granted event of payments. The pages do not show it yet;
	// it is how an operator or a test sees, over the wire, that a bought
	// badge was granted once.
	BadgeMethod = rpc.Method[BadgeRequest, Badge]{Name: "badge", Idempotent: true}
)

// SignUpRequest is a new account's handle, e-mail address and password.
// The password travels in the body only, as a log-in form's does, and is
// never logged or kept (only its bcrypt hash is).
type SignUpRequest struct {
	Handle   string `json:"handle"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

// AuthenticateRequest is a log-in.
type AuthenticateRequest struct {
	Handle   string `json:"handle"`
	Password string `json:"password"`
}

// UserRequest names a user by id.
type UserRequest struct {
	ID string `json:"id"`
}

// UserByHandleRequest names a user by handle.
type UserByHandleRequest struct {
	Handle string `json:"handle"`
}

// FollowRequest is one edge of the follow graph: follower follows followee.
type FollowRequest struct {
	Follower string `json:"follower"`
	Followee string `json:"followee"`
}

// IsFollowingResult is IsFollowing's answer.
type IsFollowingResult struct {
	Following bool `json:"following"`
}

// IDList is Following's and Followers' answer: user ids, never null.
type IDList struct {
	IDs []string `json:"ids"`
}

// BadgeRequest asks for a user's supporter badge.
type BadgeRequest struct {
	UserID string `json:"user_id"`
}

// Codes are the service's own errors on the wire: none, since accounts
// answers only svc's errors (the table's), but the users node serves the
// sessions too, and gives its server and the gateway's client this list
// and the sessions' (app.SessionCodes) together.
var Codes []rpc.Code

// Outbox returns the service's event outbox (bucket users.outbox) over
// s's store: Register's out, and the node's publisher's.
func (s *Service) Outbox() svc.EventOutbox { return svc.OutboxOf(s.st, Name) }

// Register serves s's methods on server. A sign-up commits a
// user.signed_up event into out in the same store transaction as the new
// account, so that the account and its event exist together or not at
// all: a sign-up whose answer was lost still has its welcome e-mail, once.
func Register(server *rpc.Server, s *Service, out svc.EventOutbox) {
	rpc.Handle(server, SignUpMethod, func(ctx context.Context, req SignUpRequest) (User, error) {
		ctx = svc.WithOutbox(ctx, func(u User) []store.Op {
			return []store.Op{out.Put(SignedUpEvent(u, time.Now()))}
		})
		return s.SignUp(ctx, req.Handle, req.Email, req.Password)
	})
	rpc.Handle(server, AuthenticateMethod, func(ctx context.Context, req AuthenticateRequest) (User, error) {
		return s.Authenticate(ctx, req.Handle, req.Password)
	})
	rpc.Handle(server, UserMethod, func(ctx context.Context, req UserRequest) (User, error) {
		return s.User(ctx, req.ID)
	})
	rpc.Handle(server, UserByHandleMethod, func(ctx context.Context, req UserByHandleRequest) (User, error) {
		return s.UserByHandle(ctx, req.Handle)
	})
	rpc.Handle(server, FollowMethod, func(ctx context.Context, req FollowRequest) (struct{}, error) {
		if err := req.check(); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.Follow(ctx, req.Follower, req.Followee)
	})
	rpc.Handle(server, UnfollowMethod, func(ctx context.Context, req FollowRequest) (struct{}, error) {
		if err := req.check(); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.Unfollow(ctx, req.Follower, req.Followee)
	})
	rpc.Handle(server, IsFollowingMethod, func(ctx context.Context, req FollowRequest) (IsFollowingResult, error) {
		if err := req.check(); err != nil {
			return IsFollowingResult{}, err
		}
		ok, err := s.IsFollowing(ctx, req.Follower, req.Followee)
		return IsFollowingResult{Following: ok}, err
	})
	rpc.Handle(server, FollowingMethod, func(ctx context.Context, req UserRequest) (IDList, error) {
		return idList(req.ID, s.Following)(ctx)
	})
	rpc.Handle(server, FollowersMethod, func(ctx context.Context, req UserRequest) (IDList, error) {
		return idList(req.ID, s.Followers)(ctx)
	})
	rpc.Handle(server, BadgeMethod, func(ctx context.Context, req BadgeRequest) (Badge, error) {
		return s.Badge(ctx, req.UserID)
	})
}

// SignedUpEvent is the user.signed_up event of u's sign-up, made at.
func SignedUpEvent(u User, at time.Time) svc.Event {
	return svc.NewEvent(Name, svc.EventUserSignedUp, at, svc.UserSignedUp{UserID: u.ID, Handle: u.Handle, Email: u.Email})
}

// check refuses an edge without both ends: in-process the app always
// gives both, but a caller over the wire may leave one out, and an edge of
// "" would be stored.
func (r FollowRequest) check() error {
	switch {
	case r.Follower == "":
		return svc.Invalid("follower", "is required")
	case r.Followee == "":
		return svc.Invalid("followee", "is required")
	}
	return nil
}

// idList answers a list of edges of id, "[]" rather than null when empty.
func idList(id string, list func(context.Context, string) ([]string, error)) func(context.Context) (IDList, error) {
	return func(ctx context.Context) (IDList, error) {
		if id == "" {
			return IDList{}, svc.Invalid("id", "is required")
		}
		ids, err := list(ctx, id)
		if ids == nil {
			ids = []string{}
		}
		return IDList{IDs: ids}, err
	}
}

// Client is the users service's accounts over the wire: what the gateway
// uses as its app.Accounts at stage 10. Its errors are the service's, as
// in-process (svc.ErrNotFound, svc.ErrBadCredentials, *svc.FieldError
// matching svc.ErrExists for a taken handle), or the wire's
// (rpc.ErrUnavailable, rpc.ErrOutcomeUnknown for a sign-up whose answer
// was lost). Safe for concurrent use.
type Client struct {
	c *rpc.Client
}

// NewClient returns the accounts of the users service that c calls (a
// client for Name whose Codes are Codes and the sessions' codes).
func NewClient(c *rpc.Client) *Client { return &Client{c: c} }

// SignUp creates an account.
func (cl *Client) SignUp(ctx context.Context, handle, email, password string) (User, error) {
	return rpc.Call(ctx, cl.c, SignUpMethod, SignUpRequest{Handle: handle, Email: email, Password: password})
}

// Authenticate checks a handle and password and returns the user, or
// svc.ErrBadCredentials.
func (cl *Client) Authenticate(ctx context.Context, handle, password string) (User, error) {
	return rpc.Call(ctx, cl.c, AuthenticateMethod, AuthenticateRequest{Handle: handle, Password: password})
}

// User returns the user with id, or svc.ErrNotFound.
func (cl *Client) User(ctx context.Context, id string) (User, error) {
	return rpc.Call(ctx, cl.c, UserMethod, UserRequest{ID: id})
}

// UserByHandle returns the user with handle, or svc.ErrNotFound.
func (cl *Client) UserByHandle(ctx context.Context, handle string) (User, error) {
	return rpc.Call(ctx, cl.c, UserByHandleMethod, UserByHandleRequest{Handle: handle})
}

// Follow makes follower follow followee; following twice is one follow.
func (cl *Client) Follow(ctx context.Context, follower, followee string) error {
	_, err := rpc.Call(ctx, cl.c, FollowMethod, FollowRequest{Follower: follower, Followee: followee})
	return err
}

// Unfollow undoes Follow; unfollowing someone not followed is not an error.
func (cl *Client) Unfollow(ctx context.Context, follower, followee string) error {
	_, err := rpc.Call(ctx, cl.c, UnfollowMethod, FollowRequest{Follower: follower, Followee: followee})
	return err
}

// IsFollowing reports whether follower follows followee.
func (cl *Client) IsFollowing(ctx context.Context, follower, followee string) (bool, error) {
	r, err := rpc.Call(ctx, cl.c, IsFollowingMethod, FollowRequest{Follower: follower, Followee: followee})
	return r.Following, err
}

// Following returns the ids of the users id follows.
func (cl *Client) Following(ctx context.Context, id string) ([]string, error) {
	r, err := rpc.Call(ctx, cl.c, FollowingMethod, UserRequest{ID: id})
	return r.IDs, err
}

// Followers returns the ids of the users following id.
func (cl *Client) Followers(ctx context.Context, id string) ([]string, error) {
	r, err := rpc.Call(ctx, cl.c, FollowersMethod, UserRequest{ID: id})
	return r.IDs, err
}

// Badge returns userID's supporter badge, or svc.ErrNotFound when the user
// has none.
func (cl *Client) Badge(ctx context.Context, userID string) (Badge, error) {
	return rpc.Call(ctx, cl.c, BadgeMethod, BadgeRequest{UserID: userID})
}
