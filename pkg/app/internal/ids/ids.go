// Package ids makes the short, URL-safe, time-ordered identifiers the blog
// uses for users, posts, comments, notifications and jobs.
//
// An id is 13 characters of a lowercase base32 alphabet whose order matches
// byte order: 9 characters of milliseconds since the Unix epoch (enough until
// the year 3084) followed by 4 random characters. Sorting ids as strings
// sorts them by creation time, which is what lets the store's ordered scans
// serve "newest first" feeds without a separate time index.
package ids

import (
	"math/rand/v2"
	"time"
)

// alphabet is Crockford's base32 in lowercase: ASCII-ordered, no i, l, o, u.
const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// Len is the length of every id.
const Len = 13

// New returns a fresh id for the current time.
func New() string { return At(time.Now()) }

// At returns a fresh id for time t (random suffix, so two calls differ).
func At(t time.Time) string {
	return encode(uint64(t.UnixMilli()), rand.Uint32())
}

func encode(ms uint64, r uint32) string {
	var b [Len]byte
	for i := 8; i >= 0; i-- {
		b[i] = alphabet[ms&31]
		ms >>= 5
	}
	for i := 12; i >= 9; i-- {
		b[i] = alphabet[r&31]
		r >>= 5
	}
	return string(b[:])
}

// Valid reports whether s has the shape of an id, so handlers can answer
// 404 without a store round trip for obviously bad paths.
func Valid(s string) bool {
	if len(s) != Len {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') || c == 'i' || c == 'l' || c == 'o' || c == 'u' {
			return false
		}
	}
	return true
}

// Time returns the creation time encoded in id; zero if id is not valid.
func Time(id string) time.Time {
	if !Valid(id) {
		return time.Time{}
	}
	var ms uint64
	for i := 0; i < 9; i++ {
		ms = ms<<5 | uint64(indexOf(id[i]))
	}
	return time.UnixMilli(int64(ms))
}

func indexOf(c byte) int {
	for i := 0; i < len(alphabet); i++ {
		if alphabet[i] == c {
			return i
		}
	}
	return 0
}
