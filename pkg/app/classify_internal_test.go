package app

import (
	"fmt"
	"net/http"
	"testing"

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
