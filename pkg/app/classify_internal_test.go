package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
)

// Store errors of a failover in progress are a 503 the user can retry,
// never a 500.
func TestClassifyStoreErrors(t *testing.T) {
	for _, err := range []error{store.ErrUnavailable, store.ErrNotPrimary, store.ErrStaleEpoch, store.ErrBehind, store.ErrSyncTimeout} {
		wrapped := fmt.Errorf("posts: save: %w", err)
		if code, msg, _ := classify(wrapped); code != http.StatusServiceUnavailable || msg == "" {
			t.Errorf("classify(%v) = %d %q, want 503 with a message", wrapped, code, msg)
		}
	}
}

// A remote service's outage, as its rpc client reports it, is a 503 the
// user can retry, never a 500: no instance, breakers open, a call that got
// no answer, a deadline, a write whose outcome is unknown.
func TestClassifyServiceErrors(t *testing.T) {
	noAnswer := &url.Error{Op: "Post", URL: "http://127.0.0.1:1/v1/search/query", Err: errors.New("connection reset by peer")}
	for _, err := range []error{
		fmt.Errorf("service search: no instance known (none in membership, or all draining): %w", rpc.ErrUnavailable),
		fmt.Errorf("search.query on search-1: no answer: %w", noAnswer),
		fmt.Errorf("content.post-create on content-1: %w: no answer", rpc.ErrOutcomeUnknown),
		fmt.Errorf("users.session-get: %w", context.DeadlineExceeded),
		fmt.Errorf("%w: %w", errSearchDown, rpc.ErrUnavailable),
	} {
		if code, msg, _ := classify(err); code != http.StatusServiceUnavailable || msg == "" {
			t.Errorf("classify(%v) = %d %q, want 503 with a message", err, code, msg)
		}
		if storeTrouble(err) {
			t.Errorf("storeTrouble(%v) = true, want false: the 503 page must not blame the database", err)
		}
	}
	// A service's bug is the app's 500, as any.
	if code, _, _ := classify(fmt.Errorf("search.query on search-1: %w", rpc.ErrInternal)); code != http.StatusInternalServerError {
		t.Errorf("classify(rpc.ErrInternal) = %d, want 500", code)
	}
}
