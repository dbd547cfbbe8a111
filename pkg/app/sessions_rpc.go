package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
)

// Sessions over the services' wire (stage 10): the users service keeps
// them (the users node serves a SharedSessions over its own store group),
// and the gateway reads and writes them through NewSessionsClient. The
// methods live here rather than in pkg/app/accounts because Session is the
// app's type, and accounts may not import the app.
//
// A session id is a secret (whoever has it is logged in): it travels in
// the request's body, never in a path or a query, so no access log, proxy
// log or X-Served-By of any hop records it, and neither side logs it.

// The sessions' methods, served under the users service's name.
var (
	// SessionGetMethod is Sessions.Get.
	SessionGetMethod = rpc.Method[SessionIDRequest, WireSession]{Name: "session-get", Idempotent: true}
	// SessionPutMethod is Sessions.Put: it sets the whole session, so a
	// repeat does what one call does.
	SessionPutMethod = rpc.Method[WireSession, struct{}]{Name: "session-put", Idempotent: true}
	// SessionDeleteMethod is Sessions.Delete; deleting a missing session is
	// not an error, so a repeat is harmless.
	SessionDeleteMethod = rpc.Method[SessionIDRequest, struct{}]{Name: "session-delete", Idempotent: true}
)

// SessionCodes are the sessions' own errors on the wire: ErrNoSession,
// which the gateway tells apart from a failure (no session: a stranger;
// a failure: a 503, and the user still logged in once the service is
// back). 404 as a missing thing is; the code, not the status, carries it.
// The users node gives its server accounts.Codes and these together, and
// the gateway gives the same list to its users client.
var SessionCodes = []rpc.Code{
	{Name: "no_session", Status: http.StatusNotFound, Err: ErrNoSession},
}

// SessionIDRequest names a session by its id (in the body: see above).
type SessionIDRequest struct {
	ID string `json:"id"`
}

// WireSession is a Session as the wire carries it. LastLSNs is in
// store.LSNs' JSON form (a number for the default group alone, else
// "123,users=45"), which keeps every group's LSN exactly; Expires is in
// UTC with nanoseconds (RFC 3339).
type WireSession struct {
	ID       string     `json:"id"`
	UserID   string     `json:"user_id"`
	Handle   string     `json:"handle"`
	LastLSNs store.LSNs `json:"last_lsns,omitempty"`
	Expires  time.Time  `json:"expires"`
}

func wireSession(s Session) WireSession {
	return WireSession{ID: s.ID, UserID: s.UserID, Handle: s.Handle, LastLSNs: s.LastLSNs, Expires: s.Expires.UTC()}
}

func (w WireSession) session() Session {
	return Session{ID: w.ID, UserID: w.UserID, Handle: w.Handle, LastLSNs: w.LastLSNs, Expires: w.Expires}
}

// RegisterSessions serves s on server, the users service's (whose
// ServerConfig.Codes must include SessionCodes). Ids that NewSessionID
// could not have made are refused before s sees them: a get finds no
// session, a put is a field error on id, a delete does nothing.
func RegisterSessions(server *rpc.Server, s Sessions) {
	rpc.Handle(server, SessionGetMethod, func(ctx context.Context, req SessionIDRequest) (WireSession, error) {
		if !validSessionID(req.ID) {
			return WireSession{}, ErrNoSession
		}
		sess, err := s.Get(ctx, req.ID)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// SharedSessions' own read window ran out while the store
			// failed over: the store's trouble, shared by every instance,
			// which the wire says as unavailable (503, neutral to the
			// caller's breakers) rather than as this instance's deadline
			// (504, counted against it).
			err = fmt.Errorf("%w: %w", rpc.ErrUnavailable, err)
		}
		if err != nil {
			return WireSession{}, err
		}
		return wireSession(sess), nil
	})
	rpc.Handle(server, SessionPutMethod, func(ctx context.Context, req WireSession) (struct{}, error) {
		switch {
		case !validSessionID(req.ID):
			return struct{}{}, svc.Invalid("id", "is not a session id (43 URL-safe base64 characters, as NewSessionID makes)")
		case req.UserID == "":
			return struct{}{}, svc.Invalid("user_id", "is required")
		case req.Expires.IsZero():
			return struct{}{}, svc.Invalid("expires", "is required")
		}
		return struct{}{}, s.Put(ctx, req.session())
	})
	rpc.Handle(server, SessionDeleteMethod, func(ctx context.Context, req SessionIDRequest) (struct{}, error) {
		if !validSessionID(req.ID) {
			return struct{}{}, nil
		}
		return struct{}{}, s.Delete(ctx, req.ID)
	})
}

// sessionsClient is Sessions over the wire.
type sessionsClient struct {
	c *rpc.Client
}

// NewSessionsClient returns the sessions of the users service that c
// calls (a client for the users service whose Codes include
// SessionCodes). Get answers ErrNoSession itself for a session that does
// not exist or has expired, as in-process, and an error wrapping it for a
// record the service could not read (which the gateway logs); any other
// error is the wire's (rpc.ErrUnavailable, a deadline), for which the
// gateway answers 503 rather than logging the user out.
func NewSessionsClient(c *rpc.Client) Sessions { return sessionsClient{c: c} }

func (sc sessionsClient) Get(ctx context.Context, id string) (Session, error) {
	w, err := rpc.Call(ctx, sc.c, SessionGetMethod, SessionIDRequest{ID: id})
	if err != nil {
		var re *rpc.Error
		if errors.Is(err, ErrNoSession) && errors.As(err, &re) && re.Wire.Error == ErrNoSession.Error() {
			// Plainly none, as the service said it: the sentinel itself,
			// which the gateway does not log.
			return Session{}, ErrNoSession
		}
		return Session{}, err
	}
	return w.session(), nil
}

func (sc sessionsClient) Put(ctx context.Context, s Session) error {
	_, err := rpc.Call(ctx, sc.c, SessionPutMethod, wireSession(s))
	return err
}

func (sc sessionsClient) Delete(ctx context.Context, id string) error {
	_, err := rpc.Call(ctx, sc.c, SessionDeleteMethod, SessionIDRequest{ID: id})
	return err
}
