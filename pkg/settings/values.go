package settings

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The flag.Value types of the common kinds of setting. The standard flag
// package has them too, but only behind FlagSet methods that register a
// flag at once; a table needs the value first and registers it later.

type stringValue struct{ p *string }

// String returns a flag.Value over *p.
func String(p *string) Value {
	return stringValue{p}
}

func (v stringValue) Set(s string) error { *v.p = s; return nil }
func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

type intValue struct{ p *int }

// Int returns a flag.Value over *p: a decimal integer.
func Int(p *int) Value { return intValue{p} }

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*v.p = n
	return nil
}
func (v intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

type int64Value struct{ p *int64 }

// Int64 returns a flag.Value over *p: a decimal integer.
func Int64(p *int64) Value { return int64Value{p} }

func (v int64Value) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*v.p = n
	return nil
}
func (v int64Value) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatInt(*v.p, 10)
}

type floatValue struct{ p *float64 }

// Float64 returns a flag.Value over *p.
func Float64(p *float64) Value { return floatValue{p} }

func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", s)
	}
	*v.p = f
	return nil
}
func (v floatValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

type boolValue struct{ p *bool }

// Bool returns a flag.Value over *p. Given alone (--sticky) it means true;
// --sticky=false turns it off.
func Bool(p *bool) Value { return boolValue{p} }

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q: want true or false", s)
	}
	*v.p = b
	return nil
}
func (v boolValue) String() string {
	if v.p == nil {
		return "false"
	}
	return strconv.FormatBool(*v.p)
}

// IsBoolFlag lets the flag package take the flag without a value.
func (v boolValue) IsBoolFlag() bool { return true }

type durationValue struct{ p *time.Duration }

// Duration returns a flag.Value over *p, written as Go durations are
// (300ms, 1.5s, 2m, 1h30m).
func Duration(p *time.Duration) Value { return durationValue{p} }

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration: write it as 300ms, 1.5s, 2m or 1h", s)
	}
	*v.p = d
	return nil
}
func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

type listValue struct{ p *[]string }

// List returns a flag.Value over *p: comma-separated items, blanks
// dropped; each Set replaces the whole list.
func List(p *[]string) Value { return listValue{p} }

func (v listValue) Set(s string) error {
	*v.p = SplitList(s)
	return nil
}
func (v listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

// SplitList splits a comma-separated list, trimming each item and dropping
// empty ones.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

type bytesValue struct{ p *int64 }

// Bytes returns a flag.Value over *p: a byte count written plainly or with
// a binary suffix (65536, 64KiB, 64MiB, 1GiB; K, M, G and KB, MB, GB mean
// the same). It prints with the largest suffix that divides it exactly.
func Bytes(p *int64) Value { return bytesValue{p} }

func (v bytesValue) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}
func (v bytesValue) String() string {
	if v.p == nil {
		return "0"
	}
	return FormatBytes(*v.p)
}

type intBytesValue struct{ p *int }

// IntBytes is Bytes over an int, at most 2 GiB - 1.
func IntBytes(p *int) Value { return intBytesValue{p} }

func (v intBytesValue) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return err
	}
	if n > int64(^uint32(0)>>1) {
		return fmt.Errorf("%q is too large: at most 2GiB-1", s)
	}
	*v.p = int(n)
	return nil
}
func (v intBytesValue) String() string {
	if v.p == nil {
		return "0"
	}
	return FormatBytes(int64(*v.p))
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}

// ParseBytes reads a byte count as Bytes does.
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size: want bytes, optionally with KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

// FormatBytes writes n with the largest binary suffix that divides it.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Func returns a flag.Value that calls set with each value and shows show
// as its current value.
func Func(show func() string, set func(string) error) Value { return funcValue{show, set} }

type funcValue struct {
	show func() string
	set  func(string) error
}

func (v funcValue) Set(s string) error { return v.set(s) }
func (v funcValue) String() string {
	if v.show == nil {
		return ""
	}
	return v.show()
}
