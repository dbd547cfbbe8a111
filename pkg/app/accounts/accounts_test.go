package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

func TestPasswordRules(t *testing.T) {
	ctx := context.Background()
	s := accounts.New(apptest.NewMemStore(), bcrypt.MinCost)
	for i, tt := range []struct {
		password string
		ok       bool
	}{
		{"1234567", false},
		{"12345678", false},             // common
		{"PassWord123", false},          // common, whatever the case
		{"aaaaaaaa", false},             // one character repeated
		{"éééééééé", false},             // one (two-byte) character repeated
		{"user0001", false},             // the handle
		{"user0001@example.com", false}, // the e-mail
		{string([]byte{'a', 'b', 'c', 'd', 0xff, 'e', 'f', 'g'}), false},
		{strings.Repeat("z", 71) + "y", true},
		{strings.Repeat("z", 72) + "y", false},
		{"violet kettle drum", true},
		{"long enough", true},
	} {
		handle := fmt.Sprintf("user%04d", i)
		_, err := s.SignUp(ctx, handle, handle+"@example.com", strings.ReplaceAll(tt.password, "user0001", handle))
		var fe *svc.FieldError
		switch {
		case tt.ok && err != nil:
			t.Errorf("SignUp with password %q: %v, want it accepted", tt.password, err)
		case !tt.ok && (!errors.As(err, &fe) || fe.Field != "password"):
			t.Errorf("SignUp with password %q: %v, want a password field error", tt.password, err)
		}
	}
	// bcrypt reads 72 bytes: more is a wrong password, not the same one.
	pw := strings.Repeat("z", 71) + "y"
	if _, err := s.Authenticate(ctx, "user0008", pw); err != nil {
		t.Fatalf("Authenticate with the password: %v", err)
	}
	if _, err := s.Authenticate(ctx, "user0008", pw+"!"); !errors.Is(err, svc.ErrBadCredentials) {
		t.Errorf("Authenticate with the password and one byte more = %v, want ErrBadCredentials", err)
	}
}
