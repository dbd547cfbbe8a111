package search

import (
	"context"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// The search API over the services' wire (pkg/app/svc/rpc,
// docs/services.md): each method declared once, for the search node
// (Register) and the gateway's client (NewClient). docs/api.md, "Search
// service (stage 10)", has the JSON and the statuses.
//
// Every method may be repeated: index and remove make the index agree with
// what they are given, whatever it held before, and query is a read. The
// search service has no errors of its own beyond the wire's table.

// Name is the service's name on the wire: /v1/search/{method}.
const Name = "search"

// Limits of the wire.
const (
	// MaxQueryBytes bounds a query's text, as the app's search box does.
	MaxQueryBytes = 200
	// MaxQueryLimit is the most ids one query answers.
	MaxQueryLimit = 100
)

// The methods.
var (
	// IndexMethod is Service.Index.
	IndexMethod = rpc.Method[IndexRequest, struct{}]{Name: "index", Idempotent: true}
	// RemoveMethod is Service.Remove.
	RemoveMethod = rpc.Method[RemoveRequest, struct{}]{Name: "remove", Idempotent: true}
	// QueryMethod is Service.Query.
	QueryMethod = rpc.Method[QueryRequest, QueryResult]{Name: "query", Idempotent: true}
)

// IndexRequest is a post as the index takes it.
type IndexRequest struct {
	PostID string   `json:"post_id"`
	Title  string   `json:"title"`
	Tags   []string `json:"tags,omitempty"`
	Body   string   `json:"body"`
}

// RemoveRequest names the post to drop from the index.
type RemoveRequest struct {
	PostID string `json:"post_id"`
}

// QueryRequest asks for the posts with every word of Q.
type QueryRequest struct {
	Q string `json:"q"`
	// Limit is 1 to MaxQueryLimit; zero: MaxQueryLimit.
	Limit int `json:"limit,omitempty"`
}

// QueryResult is Query's answer: post ids, newest first.
type QueryResult struct {
	IDs []string `json:"ids"`
}

// Register serves s's methods on server.
func Register(server *rpc.Server, s *Service) {
	rpc.Handle(server, IndexMethod, func(ctx context.Context, req IndexRequest) (struct{}, error) {
		if err := checkPostID(req.PostID); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.Index(ctx, req.PostID, req.Title, req.Tags, req.Body)
	})
	rpc.Handle(server, RemoveMethod, func(ctx context.Context, req RemoveRequest) (struct{}, error) {
		if err := checkPostID(req.PostID); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.Remove(ctx, req.PostID)
	})
	rpc.Handle(server, QueryMethod, func(ctx context.Context, req QueryRequest) (QueryResult, error) {
		switch {
		case len(req.Q) > MaxQueryBytes:
			return QueryResult{}, svc.Invalid("q", "must be at most %d bytes", MaxQueryBytes)
		case req.Limit < 0 || req.Limit > MaxQueryLimit:
			return QueryResult{}, svc.Invalid("limit", "must be 1 to %d (0: %d)", MaxQueryLimit, MaxQueryLimit)
		case req.Limit == 0:
			req.Limit = MaxQueryLimit
		}
		hits, err := s.Query(ctx, req.Q, req.Limit)
		if hits == nil {
			hits = []string{}
		}
		return QueryResult{IDs: hits}, err
	})
}

// checkPostID refuses what is not a post id: the id is part of the index's
// keys (word/post id), so one with a '/' would read as another post's.
func checkPostID(id string) error {
	if !ids.Valid(id) {
		return svc.Invalid("post_id", "%q is not a post id", id)
	}
	return nil
}

// Client is the search service over the wire, with the methods of the
// in-process Service (the app's Search interface).
type Client struct{ c *rpc.Client }

// NewClient returns the search service called through c, an rpc client of
// service Name.
func NewClient(c *rpc.Client) *Client { return &Client{c: c} }

// Index (re)indexes a post.
func (c *Client) Index(ctx context.Context, postID, title string, tags []string, body string) error {
	_, err := rpc.Call(ctx, c.c, IndexMethod, IndexRequest{PostID: postID, Title: title, Tags: tags, Body: body})
	return err
}

// Remove drops a post from the index.
func (c *Client) Remove(ctx context.Context, postID string) error {
	_, err := rpc.Call(ctx, c.c, RemoveMethod, RemoveRequest{PostID: postID})
	return err
}

// Query returns the ids of posts containing every word of q, newest first,
// at most limit of them (and never more than MaxQueryLimit). A limit of
// zero or less asks for nothing, as in-process, and makes no call.
func (c *Client) Query(ctx context.Context, q string, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	res, err := rpc.Call(ctx, c.c, QueryMethod, QueryRequest{Q: q, Limit: min(limit, MaxQueryLimit)})
	if err != nil {
		return nil, err
	}
	return res.IDs, nil
}
