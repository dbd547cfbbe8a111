package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// LSNs is a log position per store group: the LSN a caller has seen, or
// must see, in each group it reads. LSNs of different groups count
// different logs, so they are kept apart and only ever compared within a
// group. The key is the group as the stack writes it (DefaultGroup is "");
// a group absent from the map is at 0. Treat an LSNs as immutable: With
// and Merge return a new map when they change anything, so copies of a
// Session or a Trace never share a map that changes.
type LSNs map[string]uint64

// LSNsOf returns the LSNs holding lsn in group alone (none if lsn is 0).
func LSNsOf(group string, lsn uint64) LSNs { return LSNs(nil).With(group, lsn) }

// Get returns the LSN of group, 0 if there is none.
func (l LSNs) Get(group string) uint64 { return l[canonGroup(group)] }

// With returns l with group's LSN raised to lsn: l itself when it already
// has lsn or more, else a copy.
func (l LSNs) With(group string, lsn uint64) LSNs {
	g := canonGroup(group)
	if lsn <= l[g] {
		return l
	}
	out := make(LSNs, len(l)+1)
	for k, v := range l {
		out[k] = v
	}
	out[g] = lsn
	return out
}

// Merge returns the highest LSN of each group of l and o: l itself when o
// raises none of them.
func (l LSNs) Merge(o LSNs) LSNs {
	for g, v := range o {
		l = l.With(g, v)
	}
	return l
}

// String writes l compactly, as X-Store-LSN and a session record carry
// it: the default group's LSN as a bare number, then each other group as
// group=LSN, by name, separated by commas: "123", "123,content=45",
// "content=45". No LSN at all is "0". A single bare number is what stages
// 1 to 9 wrote, and still reads as the default group's.
func (l LSNs) String() string {
	groups := make([]string, 0, len(l))
	for g, v := range l {
		if v > 0 {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups) // DefaultGroup ("") first
	if len(groups) == 0 {
		return "0"
	}
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteByte(',')
		}
		if g != DefaultGroup {
			b.WriteString(g)
			b.WriteByte('=')
		}
		b.WriteString(strconv.FormatUint(l[g], 10))
	}
	return b.String()
}

// ParseLSNs reads the form String writes. "" and "0" are no LSN. A group
// named twice keeps its highest LSN.
func ParseLSNs(s string) (LSNs, error) {
	var l LSNs
	if s == "" {
		return l, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		group, num, named := strings.Cut(part, "=")
		if !named {
			group, num = DefaultGroup, part
		} else if group == "" {
			return nil, fmt.Errorf("LSNs %q: %q names no group", s, part)
		}
		g, err := ParseGroup(group)
		if err != nil {
			return nil, fmt.Errorf("LSNs %q: %w", s, err)
		}
		lsn, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("LSNs %q: %q is not an LSN", s, num)
		}
		l = l.With(g, lsn)
	}
	return l, nil
}

// MarshalJSON writes the default group's LSN alone as a JSON number, as
// records written before store groups held it (so that a stage-1-to-9
// session record is unchanged), and anything else as the String form.
func (l LSNs) MarshalJSON() ([]byte, error) {
	s := l.String()
	if _, err := strconv.ParseUint(s, 10, 64); err == nil {
		return []byte(s), nil
	}
	return json.Marshal(s)
}

// UnmarshalJSON reads a number (the default group's LSN, as written
// before store groups) or the String form.
func (l *LSNs) UnmarshalJSON(b []byte) error {
	var s string
	if bytes.HasPrefix(b, []byte(`"`)) {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else if !bytes.Equal(b, []byte("null")) {
		s = string(b)
	}
	v, err := ParseLSNs(s)
	if err != nil {
		return err
	}
	*l = v
	return nil
}
