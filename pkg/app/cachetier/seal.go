package cachetier

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
)

// Every entry the tier writes is sealed: it carries an HMAC-SHA256, under
// Config.MACKey, of what it says, and a reader believes nothing that does
// not verify. Whoever can write to a cache node (a leaked cache password, a
// node on a shared network, a bug in another client) can then delete or
// replay entries, which costs store reads, but cannot make the app serve a
// session, a post or a rendered fragment that the app did not write.
//
// The forms, as a cache node holds them (after the key prefix):
//
//	D<expires>.<mac><value>   a value; expires is the fill time plus TTL,
//	                          in Unix milliseconds; the MAC covers the full
//	                          key, expires and the value, so a value cannot
//	                          be moved to another key, nor replayed after
//	                          its TTL
//	T<lsn>.<mac>              a tombstone; the MAC covers the LSN only, so
//	                          every key of a write shares one tombstone (a
//	                          tombstone copied to another key only makes it
//	                          a miss, as a DEL would)
//	<lsn>.<mac>               the watermark (the key "wm")
//
// A tier of another store group than the default one (Config.Group, stage
// 10) writes <lsn>@<group> where these forms have <lsn>, under the MAC,
// and keeps its watermark under "wm@<group>": LSNs of different groups
// count different logs, so a tombstone tells which log its LSN is of, and
// a tier compares only LSNs of its own group.
//
// <mac> is the MAC in unpadded base64url (43 characters).

// devMACKey seals entries when Config.MACKey is empty. It is written here,
// so it tells the tier's entries from anything else in the cache and from
// an older format, but it protects nothing against someone who can write
// to the cache. The node derives a real key from --cluster-key, without
// which it binds loopback addresses only.
const devMACKey = "scalestack/cache-mac/development key: public, protects nothing"

// macLen is the length of an encoded MAC.
const macLen = 43

// Kinds of MAC input, so that no sealed form can stand for another.
const (
	macData      = 'D'
	macTombstone = 'T'
	macWatermark = 'W'
)

// sealer seals and opens entries. Safe for concurrent use.
type sealer struct {
	pool sync.Pool // of hash.Hash: HMAC-SHA256 under the key
}

func newSealer(key []byte) *sealer {
	if len(key) == 0 {
		key = []byte(devMACKey)
	}
	key = append([]byte(nil), key...)
	s := &sealer{}
	s.pool.New = func() any { return hmac.New(sha256.New, key) }
	return s
}

// mac returns the encoded MAC of kind, key, stamp and value.
func (s *sealer) mac(kind byte, key, stamp string, value []byte) string {
	h := s.pool.Get().(hash.Hash)
	defer s.pool.Put(h)
	h.Reset()
	var buf [9]byte
	buf[0] = kind
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(key)))
	binary.BigEndian.PutUint32(buf[5:9], uint32(len(stamp)))
	h.Write(buf[:])
	h.Write([]byte(key))
	h.Write([]byte(stamp))
	h.Write(value)
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0]))
}

// equal compares two MACs in constant time.
func equal(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }

// data seals value under fullKey (prefix included), valid until expires.
func (s *sealer) data(fullKey string, value []byte, expires time.Time) []byte {
	stamp := strconv.FormatInt(expires.UnixMilli(), 10)
	mac := s.mac(macData, fullKey, stamp, value)
	buf := make([]byte, 0, 1+len(stamp)+1+macLen+len(value))
	buf = append(buf, kindData)
	buf = append(buf, stamp...)
	buf = append(buf, '.')
	buf = append(buf, mac...)
	return append(buf, value...)
}

// openData verifies a sealed value read under fullKey. ok is false if it
// does not verify; expired is true if it does, but its time is past (a
// replay, or a clock that differs from the writer's).
func (s *sealer) openData(fullKey, raw string, now time.Time) (value []byte, expired, ok bool) {
	if len(raw) < 2 || raw[0] != kindData {
		return nil, false, false
	}
	stamp, rest, found := strings.Cut(raw[1:], ".")
	if !found || len(rest) < macLen || !digits(stamp) {
		return nil, false, false
	}
	mac, v := rest[:macLen], []byte(rest[macLen:])
	if !equal(mac, s.mac(macData, fullKey, stamp, v)) {
		return nil, false, false
	}
	ms, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil {
		return nil, false, false
	}
	return v, !now.Before(time.UnixMilli(ms)), true
}

// position writes an LSN of group: "<lsn>" in the default group, else
// "<lsn>@<group>".
func position(group string, lsn uint64) string {
	n := strconv.FormatUint(lsn, 10)
	if group != store.DefaultGroup {
		n += "@" + group
	}
	return n
}

// tombstone seals a tombstone of a write at lsn in group.
func (s *sealer) tombstone(group string, lsn uint64) string {
	n := position(group, lsn)
	return string(kindTomb) + n + "." + s.mac(macTombstone, "", n, nil)
}

// openTombstone verifies a tombstone and returns its group and LSN.
func (s *sealer) openTombstone(raw string) (string, uint64, bool) {
	if len(raw) < 2 || raw[0] != kindTomb {
		return "", 0, false
	}
	return s.openNumber(macTombstone, raw[1:])
}

// watermark seals a watermark of group.
func (s *sealer) watermark(group string, lsn uint64) string {
	n := position(group, lsn)
	return n + "." + s.mac(macWatermark, "", n, nil)
}

// openWatermark verifies a watermark and returns its group and LSN.
func (s *sealer) openWatermark(raw string) (string, uint64, bool) {
	return s.openNumber(macWatermark, raw)
}

func (s *sealer) openNumber(kind byte, raw string) (string, uint64, bool) {
	n, mac, found := strings.Cut(raw, ".")
	if !found || len(mac) != macLen || len(n) > 20+1+32 || !equal(mac, s.mac(kind, "", n, nil)) {
		return "", 0, false
	}
	num, group, named := strings.Cut(n, "@")
	if !digits(num) || named && group == store.DefaultGroup {
		return "", 0, false
	}
	v, err := strconv.ParseUint(num, 10, 64)
	return group, v, err == nil
}

// digits reports whether s is a non-empty run of ASCII digits.
func digits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
