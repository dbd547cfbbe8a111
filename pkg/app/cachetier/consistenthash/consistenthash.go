// Package consistenthash maps keys to nodes on a hash ring with virtual
// nodes. Each node owns many points on the ring; a key belongs to the node
// owning the first point at or after the key's hash. Adding or removing one
// of n nodes therefore moves only about 1/n of the keys, all of them to or
// from that node, which is what lets the app's cache tier grow and shrink
// without a cold cache.
//
// A Ring is immutable once built: the cache tier builds a new one when the
// set of cache nodes changes and shares it read-only, so a Ring needs no lock.
// The mapping depends only on the node names and the number of virtual nodes,
// so every app node builds the same ring from the same set.
package consistenthash

import (
	"cmp"
	"slices"
	"sort"
	"strconv"
)

// Hash maps a key or a virtual node's name to a point on the ring.
type Hash func(s string) uint64

// DefaultReplicas is the number of virtual nodes per node when New is given
// zero or less. With 160 points per node the share of each of a few nodes
// stays within about ±20% of fair (see the tests); fewer points spread keys
// less evenly, more make the ring larger to build and search.
const DefaultReplicas = 160

// Ring is a consistent hash ring. The zero value is an empty ring.
type Ring struct {
	hash   Hash
	points []point
	nodes  []string
}

type point struct {
	hash uint64
	node string
}

// New builds a ring of nodes with replicas virtual nodes each, placed with
// hash (nil means DefaultHash). Duplicate and empty node names are ignored.
func New(replicas int, hash Hash, nodes ...string) *Ring {
	if replicas <= 0 {
		replicas = DefaultReplicas
	}
	if hash == nil {
		hash = DefaultHash
	}
	r := &Ring{hash: hash}
	for _, n := range nodes {
		if n == "" || slices.Contains(r.nodes, n) {
			continue
		}
		r.nodes = append(r.nodes, n)
		for i := 0; i < replicas; i++ {
			r.points = append(r.points, point{hash: hash(strconv.Itoa(i) + "#" + n), node: n})
		}
	}
	slices.Sort(r.nodes)
	// Ties (two points with the same hash) are broken by name so that the
	// order, and so the mapping, does not depend on the order of nodes.
	slices.SortFunc(r.points, func(a, b point) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.node, b.node)
	})
	return r
}

// Get returns the node that owns key, or "" if the ring is empty.
func (r *Ring) Get(key string) string {
	if r == nil || len(r.points) == 0 {
		return ""
	}
	h := r.hash(key)
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i].hash >= h })
	if i == len(r.points) {
		i = 0
	}
	return r.points[i].node
}

// Nodes returns the ring's nodes, sorted. The slice must not be modified.
func (r *Ring) Nodes() []string {
	if r == nil {
		return nil
	}
	return r.nodes
}

// Len returns the number of nodes.
func (r *Ring) Len() int { return len(r.Nodes()) }

// DefaultHash is 64-bit FNV-1a followed by the MurmurHash3 finalizer. FNV
// alone clusters similar inputs ("0#a", "1#a", ...) on the ring; the
// finalizer spreads them. It is deterministic across processes, which a
// seeded hash (hash/maphash) would not be.
func DefaultHash(s string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	x := uint64(offset)
	for i := 0; i < len(s); i++ {
		x ^= uint64(s[i])
		x *= prime
	}
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
