// Package accounts is the blog's accounts service: users (handle, e-mail,
// bcrypt password hash) and the follow graph. It owns the buckets whose names
// start with "accounts."; no other service reads them, so at stage 10 it can
// run as its own node over its own store group.
package accounts

import (
	"context"
	_ "embed" // the list of common passwords
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// Buckets owned by the service.
const (
	bucketUsers     = "accounts.users"     // user id -> record
	bucketHandles   = "accounts.handles"   // handle -> user id
	bucketEmails    = "accounts.emails"    // lower-case e-mail -> user id
	bucketFollowing = "accounts.following" // follower/followee -> ""
	bucketFollowers = "accounts.followers" // followee/follower -> ""
)

// Input limits.
const (
	MinHandle   = 3
	MaxHandle   = 20
	MaxEmail    = 254
	MinPassword = 8
	// MaxPassword is bcrypt's limit: it ignores bytes past 72.
	MaxPassword = 72
)

// User is a public account.
type User struct {
	ID        string    `json:"id"`
	Handle    string    `json:"handle"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
}

// record is what the store holds; the hash never leaves the service.
type record struct {
	User
	Hash []byte `json:"hash"`
}

// commonPasswords is the embedded list of passwords refused at sign-up.
//
//go:embed common_passwords.txt
var commonPasswords string

// Service implements the accounts service over a store.
type Service struct {
	st   store.Store
	cost int
	// dummy is a hash at the same cost, compared against when a handle does
	// not exist so that response times do not tell which handles exist.
	dummy []byte
	// common holds the passwords refused at sign-up (lower case).
	common map[string]struct{}
}

// New returns the service. cost is the bcrypt cost (bcrypt.DefaultCost in
// production; tests use bcrypt.MinCost because every unit of cost doubles
// the time of a sign-up and a log-in).
func New(st store.Store, cost int) *Service {
	if cost < bcrypt.MinCost {
		cost = bcrypt.DefaultCost
	}
	dummy, _ := bcrypt.GenerateFromPassword([]byte("not anyone's password"), cost)
	common := map[string]struct{}{}
	for _, line := range strings.Split(commonPasswords, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			common[line] = struct{}{}
		}
	}
	return &Service{st: st, cost: cost, dummy: dummy, common: common}
}

// checkPassword reports why password may not be a new account's, or "" if
// it may: 8 to 72 bytes (bcrypt reads no further than 72, so a longer one
// would be cut short without a word), valid UTF-8, not one character
// repeated, not the handle or the e-mail address, and not on the list of
// the most common passwords (common_passwords.txt), which attackers try
// first.
func (s *Service) checkPassword(password, handle, email string) string {
	if n := len(password); n < MinPassword || n > MaxPassword {
		return fmt.Sprintf("must be %d to %d bytes", MinPassword, MaxPassword)
	}
	if !utf8.ValidString(password) {
		return "must be valid UTF-8"
	}
	lower := strings.ToLower(password)
	if _, size := utf8.DecodeRuneInString(lower); strings.Count(lower, lower[:size])*size == len(lower) {
		return "must not be one character repeated"
	}
	if lower == handle || lower == strings.ToLower(email) || lower == strings.ToLower(strings.Split(email, "@")[0]) {
		return "must not be your handle or e-mail address"
	}
	if _, ok := s.common[lower]; ok {
		return "is one of the most common passwords, which are tried first; choose another"
	}
	return ""
}

// NormalizeHandle lower-cases a handle; handles compare case-insensitively.
func NormalizeHandle(h string) string { return strings.ToLower(strings.TrimSpace(h)) }

// ValidHandle reports why h is not a usable handle, or "" if it is.
func ValidHandle(h string) string {
	if len(h) < MinHandle || len(h) > MaxHandle {
		return fmt.Sprintf("must be %d to %d characters", MinHandle, MaxHandle)
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "may use only letters, digits and _"
		}
	}
	return ""
}

// SignUp creates an account. Errors: *svc.FieldError (matching
// svc.ErrExists when the handle or e-mail is taken). The caller's outbox
// for a User (svc.WithOutbox) commits with the account.
func (s *Service) SignUp(ctx context.Context, handle, email, password string) (User, error) {
	handle = NormalizeHandle(handle)
	email = strings.TrimSpace(email)
	if msg := ValidHandle(handle); msg != "" {
		return User{}, svc.Invalid("handle", "%s", msg)
	}
	if len(email) > MaxEmail {
		return User{}, svc.Invalid("email", "must be at most %d characters", MaxEmail)
	}
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return User{}, svc.Invalid("email", "is not an e-mail address")
	}
	if msg := s.checkPassword(password, handle, email); msg != "" {
		return User{}, svc.Invalid("password", "%s", msg)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return User{}, fmt.Errorf("accounts: hash password: %w", err)
	}
	u := User{ID: ids.New(), Handle: handle, Email: email, CreatedAt: time.Now().UTC().Truncate(time.Second)}
	emailKey := strings.ToLower(email)
	ops := []store.Op{
		store.IfAbsent(bucketHandles, handle),
		store.IfAbsent(bucketEmails, emailKey),
		store.Put(bucketUsers, u.ID, kv.MustJSON(record{User: u, Hash: hash})),
		store.Put(bucketHandles, handle, []byte(u.ID)),
		store.Put(bucketEmails, emailKey, []byte(u.ID)),
	}
	_, err = s.st.Txn(ctx, append(ops, svc.Outbox(ctx, u)...)...)
	if errors.Is(err, store.ErrConditionFailed) {
		// Say which one is taken; the handle wins when both are.
		if _, err := s.st.Get(ctx, bucketHandles, handle); err == nil {
			return User{}, &svc.FieldError{Field: "handle", Msg: "is taken", Err: svc.ErrExists}
		}
		return User{}, &svc.FieldError{Field: "email", Msg: "already has an account", Err: svc.ErrExists}
	}
	if err != nil {
		return User{}, fmt.Errorf("accounts: sign up: %w", err)
	}
	return u, nil
}

// Authenticate checks a handle and password and returns the user, or
// svc.ErrBadCredentials. A password over MaxPassword bytes is wrong
// whatever it starts with: bcrypt reads only the first 72 bytes, and no
// account has a longer one.
func (s *Service) Authenticate(ctx context.Context, handle, password string) (User, error) {
	if len(password) > MaxPassword {
		return User{}, svc.ErrBadCredentials
	}
	rec, err := s.byHandle(ctx, NormalizeHandle(handle))
	if errors.Is(err, svc.ErrNotFound) {
		_ = bcrypt.CompareHashAndPassword(s.dummy, []byte(password))
		return User{}, svc.ErrBadCredentials
	}
	if err != nil {
		return User{}, err
	}
	if bcrypt.CompareHashAndPassword(rec.Hash, []byte(password)) != nil {
		return User{}, svc.ErrBadCredentials
	}
	return rec.User, nil
}

// User returns the user with id, or svc.ErrNotFound.
func (s *Service) User(ctx context.Context, id string) (User, error) {
	var rec record
	if _, err := kv.GetJSON(ctx, s.st, bucketUsers, id, &rec); err != nil {
		return User{}, notFound("user", err)
	}
	return rec.User, nil
}

// UserByHandle returns the user with handle, or svc.ErrNotFound.
func (s *Service) UserByHandle(ctx context.Context, handle string) (User, error) {
	rec, err := s.byHandle(ctx, NormalizeHandle(handle))
	return rec.User, err
}

func (s *Service) byHandle(ctx context.Context, handle string) (record, error) {
	if ValidHandle(handle) != "" {
		return record{}, svc.ErrNotFound
	}
	id, err := s.st.Get(ctx, bucketHandles, handle)
	if err != nil {
		return record{}, notFound("user", err)
	}
	var rec record
	if _, err := kv.GetJSON(ctx, s.st, bucketUsers, string(id), &rec); err != nil {
		return record{}, notFound("user", err)
	}
	return rec, nil
}

// Follow makes follower follow followee; following twice is one follow.
func (s *Service) Follow(ctx context.Context, follower, followee string) error {
	if follower == followee {
		return svc.Invalid("handle", "you cannot follow yourself")
	}
	if _, err := s.User(ctx, followee); err != nil {
		return err
	}
	_, err := s.st.Txn(ctx,
		store.Put(bucketFollowing, kv.Join(follower, followee), nil),
		store.Put(bucketFollowers, kv.Join(followee, follower), nil),
	)
	if err != nil {
		return fmt.Errorf("accounts: follow: %w", err)
	}
	return nil
}

// Unfollow undoes Follow; unfollowing someone not followed is not an error.
func (s *Service) Unfollow(ctx context.Context, follower, followee string) error {
	_, err := s.st.Txn(ctx,
		store.Delete(bucketFollowing, kv.Join(follower, followee)),
		store.Delete(bucketFollowers, kv.Join(followee, follower)),
	)
	if err != nil {
		return fmt.Errorf("accounts: unfollow: %w", err)
	}
	return nil
}

// IsFollowing reports whether follower follows followee.
func (s *Service) IsFollowing(ctx context.Context, follower, followee string) (bool, error) {
	_, err := s.st.Get(ctx, bucketFollowing, kv.Join(follower, followee))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("accounts: is following: %w", err)
	}
	return true, nil
}

// Following returns the ids of the users id follows.
func (s *Service) Following(ctx context.Context, id string) ([]string, error) {
	return s.edges(ctx, bucketFollowing, id)
}

// Followers returns the ids of the users following id.
func (s *Service) Followers(ctx context.Context, id string) ([]string, error) {
	return s.edges(ctx, bucketFollowers, id)
}

func (s *Service) edges(ctx context.Context, bucket, id string) ([]string, error) {
	prefix := id + "/"
	pairs, err := kv.All(ctx, s.st, bucket, prefix)
	if err != nil {
		return nil, fmt.Errorf("accounts: list %s: %w", bucket, err)
	}
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = strings.TrimPrefix(p.Key, prefix)
	}
	return out, nil
}

// notFound maps the store's ErrNotFound to svc.ErrNotFound and wraps the rest.
func notFound(what string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, svc.ErrNotFound)
	}
	return fmt.Errorf("accounts: read %s: %w", what, err)
}
