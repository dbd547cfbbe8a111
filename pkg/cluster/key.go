package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// GenerateKey returns a new cluster key: base64 of 32 random bytes, which
// selects AES-256 for gossip. It is what `node keygen` prints.
func GenerateKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// ParseKey decodes a cluster key given as base64 (standard alphabet, padded
// or not) of 16, 24 or 32 bytes. An empty string returns a nil key, meaning
// no encryption, so a flag left unset needs no special case.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, fmt.Errorf("parse key: not base64: %w", ErrBadKey)
	}
	switch len(b) {
	case 16, 24, 32:
		return b, nil
	}
	return nil, fmt.Errorf("parse key: %d bytes, want 16, 24 or 32: %w", len(b), ErrBadKey)
}

// DeriveSecret returns a secret for another of the cluster's services (the
// NATS password, say), made from the cluster key and purpose with
// HMAC-SHA-256: every node holding the key derives the same secret, the
// secret does not reveal the key, and each purpose gets its own. A nil key
// (no encryption) gives "": that service then runs without a secret, as
// gossip runs without encryption.
func DeriveSecret(key []byte, purpose string) string {
	if len(key) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("scalestack/" + purpose))
	return hex.EncodeToString(m.Sum(nil))
}

// Purposes of the secrets derived from the cluster key, one per internal
// door, so that a credential that leaks (a purge token pasted into a script,
// a cache password in a redis-cli history) opens no other door, and none of
// them reveals the key. Every node derives the same secret for a purpose;
// changing a label changes that secret on every node of a new version,
// which cannot then talk to nodes of the old one.
const (
	// PurposeNATS is the password of NATS clients and routes (user
	// queue.AuthUser).
	PurposeNATS = "nats"
	// PurposeStore is the bearer token of the store port: the API,
	// replication stream, snapshots, lease messages, promote and hand-over,
	// checksum and status.
	PurposeStore = "store"
	// PurposeCache is the password of the cache port (RESP AUTH).
	PurposeCache = "cache"
	// PurposePurge is the bearer token of the edge's HTTP purge endpoint.
	PurposePurge = "purge"
	// PurposeAdmin is the bearer token of the admin port.
	PurposeAdmin = "admin"
	// PurposeService is the bearer token of the stage-10 service ports
	// (pkg/app/svc/rpc): the gateway and the services present it to each
	// other's instances.
	PurposeService = "service"
)

// Purposes lists every purpose a secret is derived for, in the order
// `node secret` shows them.
func Purposes() []string {
	return []string{PurposeStore, PurposeCache, PurposeNATS, PurposePurge, PurposeAdmin, PurposeService}
}

// Secrets are the credentials of the internal doors, all derived from one
// cluster key (DeriveSecrets). The zero value, from no key, protects
// nothing: each door then stays open, which only loopback allows.
type Secrets struct {
	Store   string // PurposeStore
	Cache   string // PurposeCache
	NATS    string // PurposeNATS
	Purge   string // PurposePurge
	Admin   string // PurposeAdmin
	Service string // PurposeService
}

// DeriveSecrets derives every door's credential from key; a nil key gives
// the zero Secrets.
func DeriveSecrets(key []byte) Secrets {
	return Secrets{
		Store:   DeriveSecret(key, PurposeStore),
		Cache:   DeriveSecret(key, PurposeCache),
		NATS:    DeriveSecret(key, PurposeNATS),
		Purge:   DeriveSecret(key, PurposePurge),
		Admin:   DeriveSecret(key, PurposeAdmin),
		Service: DeriveSecret(key, PurposeService),
	}
}
