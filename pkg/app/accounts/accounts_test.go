package accounts_test

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

func TestValidHandle(t *testing.T) {
	for h, ok := range map[string]bool{"ada": true, "a_1": true, "ab": false, "with space": false, "UPPER": false, "twentyonecharacters_x": false} {
		if got := accounts.ValidHandle(h) == ""; got != ok {
			t.Errorf("ValidHandle(%q) ok = %v, want %v", h, got, ok)
		}
	}
}

func TestSignUpAuthenticateFollow(t *testing.T) {
	ctx := context.Background()
	s := accounts.New(apptest.NewMemStore(), bcrypt.MinCost)
	a, err := s.SignUp(ctx, "Ada", "ada@example.com", "long enough")
	if err != nil {
		t.Fatalf("SignUp: %v", err)
	}
	b, _ := s.SignUp(ctx, "bob", "bob@example.com", "long enough")
	if _, err := s.SignUp(ctx, "ada", "x@example.com", "long enough"); !errors.Is(err, svc.ErrExists) {
		t.Errorf("SignUp(taken) error = %v, want ErrExists", err)
	}
	if _, err := s.SignUp(ctx, "other", "ADA@example.com", "long enough"); !errors.Is(err, svc.ErrExists) {
		t.Errorf("SignUp(taken e-mail, other case) error = %v, want ErrExists", err)
	}
	if u, err := s.Authenticate(ctx, "ADA", "long enough"); err != nil || u.ID != a.ID {
		t.Errorf("Authenticate = %v, %v; want ada", u, err)
	}
	if _, err := s.Authenticate(ctx, "ada", "wrong one"); !errors.Is(err, svc.ErrBadCredentials) {
		t.Errorf("Authenticate(wrong) error = %v, want ErrBadCredentials", err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Follow(ctx, b.ID, a.ID); err != nil {
			t.Fatalf("Follow: %v", err)
		}
	}
	followers, _ := s.Followers(ctx, a.ID)
	following, _ := s.Following(ctx, b.ID)
	if len(followers) != 1 || followers[0] != b.ID || len(following) != 1 || following[0] != a.ID {
		t.Errorf("followers %v following %v, want one edge b->a", followers, following)
	}
	if err := s.Unfollow(ctx, b.ID, a.ID); err != nil {
		t.Fatalf("Unfollow: %v", err)
	}
	if ok, _ := s.IsFollowing(ctx, b.ID, a.ID); ok {
		t.Errorf("IsFollowing after Unfollow = true")
	}
	if err := s.Follow(ctx, b.ID, "nobody"); !errors.Is(err, svc.ErrNotFound) {
		t.Errorf("Follow(nobody) error = %v, want ErrNotFound", err)
	}
}

// The caller's outbox commits with the account, and not at all when the
// sign-up is refused; an outbox for another type adds nothing.
func TestSignUpCarriesTheOutbox(t *testing.T) {
	st := apptest.NewMemStore()
	s := accounts.New(st, bcrypt.MinCost)
	outbox := func(ctx context.Context) context.Context {
		return svc.WithOutbox(ctx, func(u accounts.User) []store.Op {
			return []store.Op{store.Put("test.outbox", u.Handle, []byte(u.ID))}
		})
	}
	ctx := context.Background()
	u, err := s.SignUp(outbox(ctx), "ada", "ada@example.com", "long enough")
	if err != nil {
		t.Fatalf("SignUp: %v", err)
	}
	if got, err := st.Get(ctx, "test.outbox", "ada"); err != nil || string(got) != u.ID {
		t.Errorf("outbox entry of ada = %q, %v; want %q", got, err, u.ID)
	}
	if _, err := s.SignUp(outbox(ctx), "ada", "other@example.com", "long enough"); !errors.Is(err, svc.ErrExists) {
		t.Fatalf("SignUp(taken) error = %v, want ErrExists", err)
	}
	notUser := svc.WithOutbox(ctx, func(string) []store.Op {
		return []store.Op{store.Put("test.outbox", "bob", nil)}
	})
	if _, err := s.SignUp(notUser, "bob", "bob@example.com", "long enough"); err != nil {
		t.Fatalf("SignUp(bob): %v", err)
	}
	pairs, err := st.Scan(ctx, "test.outbox", store.ScanOptions{})
	if err != nil || len(pairs) != 1 {
		t.Errorf("outbox after a refused sign-up and an outbox for strings = %v, %v; want ada's entry only", pairs, err)
	}
}
