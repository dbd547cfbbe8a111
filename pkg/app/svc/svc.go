// Package svc is the vocabulary the blog's services share: the errors a
// service returns to its callers, whether they call in-process (the web
// handlers today) or over the network (stage 10), the outbox a caller
// attaches to a service's write (outbox.go), and the events services tell
// each other through their own outboxes (events.go). Keeping them in one leaf
// package lets the web layer map every service's errors to HTTP statuses
// without importing a service's internals.
package svc

import (
	"errors"
	"fmt"
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrNotFound: the user, post, comment or image does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a unique name (handle, e-mail) is already taken.
	ErrExists = errors.New("already exists")
	// ErrBadCredentials: the handle or password is wrong (never says which).
	ErrBadCredentials = errors.New("wrong handle or password")
	// ErrForbidden: the caller may not change this object.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict: the object changed under a concurrent writer too many times.
	ErrConflict = errors.New("conflict")
	// ErrUnsupported: the input's format is not one the service accepts.
	ErrUnsupported = errors.New("unsupported format")
	// ErrTooLarge: the input is over a documented size limit.
	ErrTooLarge = errors.New("too large")
)

// FieldError is a validation error about one input field, shown next to
// that field in a form and returned as {"error","field"} by the API.
type FieldError struct {
	Field string
	Msg   string
	// Err, when set, is a sentinel the error also matches (ErrExists, ...).
	Err error
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

// Unwrap lets errors.Is see the sentinel.
func (e *FieldError) Unwrap() error { return e.Err }

// Invalid returns a FieldError for field.
func Invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}
