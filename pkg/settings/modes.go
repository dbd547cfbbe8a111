package settings

import (
	"fmt"
	"strings"
)

// OneOf returns s as a T when it is one of choices, and otherwise an error
// that lists them: the Set of every mode type (a named string with
// constants) is one call to it, so a bad value is refused when the flag is
// parsed, with the choices in the message.
func OneOf[T ~string](s string, choices ...T) (T, error) {
	for _, c := range choices {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("%q: want %s", s, Choices(choices...))
}

// Choices writes choices as "a, b or c".
func Choices[T ~string](choices ...T) string {
	names := make([]string, len(choices))
	for i, c := range choices {
		names[i] = string(c)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// OnOff is a switch written "on" or "off" (the levers that stages turn on,
// such as --cache), rather than a boolean, so that a command line reads
// the same as the stage tables in docs/stages.md.
type OnOff string

// The values of an OnOff.
const (
	On  OnOff = "on"
	Off OnOff = "off"
)

// String returns the switch as written.
func (o OnOff) String() string { return string(o) }

// Set takes "on" or "off".
func (o *OnOff) Set(s string) error {
	v, err := OneOf(s, On, Off)
	if err != nil {
		return err
	}
	*o = v
	return nil
}

// Valid reports whether o is On or Off.
func (o OnOff) Valid() bool { return o == On || o == Off }
