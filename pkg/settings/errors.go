package settings

import (
	"errors"
	"fmt"
)

// FieldError is an unusable value of one field of a role's Config, as its
// Validate reports it. A library user of the role reads the Go field
// ("lb config: Retries: -1 is negative"); a Table turns it into the flag
// and environment variable that set the field ("--lb-retries
// (NODE_LB_RETRIES): -1 is negative", see Table.Explain).
type FieldError struct {
	// Config names the configuration, as the message's prefix: "lb config".
	Config string
	// Field is the Go field, a path below the Config for a nested one:
	// "Retries", "CacheTier.TTL".
	Field string
	// Problem says what is wrong with the value, without naming the field:
	// "-1 is negative". Other fields it names are written as Go fields of
	// the same Config; Table.Explain replaces those with their flags.
	Problem string
}

// Errorf returns a FieldError whose problem is format with args.
func Errorf(config, field, format string, args ...any) *FieldError {
	return &FieldError{Config: config, Field: field, Problem: fmt.Sprintf(format, args...)}
}

func (e *FieldError) Error() string {
	return e.Config + ": " + e.Field + ": " + e.Problem
}

// Within returns err with its field put below parent (a Config nested in
// another, such as the app's CacheTier) and its prefix replaced by config;
// an error that is not a FieldError is wrapped as "config: parent: err".
func Within(config, parent string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Config: config, Field: parent + "." + fe.Field, Problem: fe.Problem}
	}
	return fmt.Errorf("%s: %s: %w", config, parent, err)
}

// FlagError is a FieldError (or a bad value given to a flag) said in terms
// of the flag and its environment variable.
type FlagError struct {
	Flag, Env string
	// Problem says what is wrong, with other fields named by their flags.
	Problem string
	// Err is the FieldError or the value's own error.
	Err error
}

func (e *FlagError) Error() string {
	return fmt.Sprintf("--%s (%s): %s", e.Flag, e.Env, e.Problem)
}

func (e *FlagError) Unwrap() error { return e.Err }
