// Package search is the blog's search service: an inverted index from words
// of a post's title, tags and body to post ids, kept in the store. It owns
// the buckets whose names start with "search.". Results are newest first,
// because post ids are time-ordered.
package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/store"
)

const (
	bucketTerms = "search.terms" // term/post id -> ""
	bucketDocs  = "search.docs"  // post id -> JSON list of its terms
)

// Limits.
const (
	// MaxDocTerms caps the distinct words indexed per post; the title and
	// tags come first, so they are always in.
	MaxDocTerms = 300
	// MaxQueryTerms caps the words of a query that are used.
	MaxQueryTerms = 6
	// MaxTermPosts caps the posts read per query word.
	MaxTermPosts = 2000
	minTerm      = 2
	maxTerm      = 40
	// opsPerTxn keeps each index transaction small; the index converges
	// even if a reindex stops between transactions, because the next
	// reindex of the post recomputes everything.
	opsPerTxn = 128
)

// stop holds words too common to be worth an index entry; read only.
var stop = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields("a an and are as at be but by for from has have i in is it its of on or so that the this to was were will with you your we our not") {
		m[w] = true
	}
	return m
}()

// Terms splits text into the index's words: lower case, letters and digits,
// stop words and very short or long words left out, each word once, in
// order of first appearance.
func Terms(text string) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		if len(w) < minTerm || len(w) > maxTerm || stop[w] || seen[w] {
			continue
		}
		seen[w] = true
		out = append(out, w)
	}
	return out
}

// Service implements the search service over a store.
type Service struct{ st store.Store }

// New returns the service.
func New(st store.Store) *Service { return &Service{st: st} }

// Index (re)indexes a post. Indexing the same content twice is one index.
func (s *Service) Index(ctx context.Context, postID, title string, tags []string, body string) error {
	terms := Terms(title + " " + strings.Join(tags, " ") + " " + body)
	if len(terms) > MaxDocTerms {
		terms = terms[:MaxDocTerms]
	}
	old, err := s.docTerms(ctx, postID)
	if err != nil {
		return err
	}
	var ops []store.Op
	for _, t := range terms {
		if !slices.Contains(old, t) {
			ops = append(ops, store.Put(bucketTerms, kv.Join(t, postID), nil))
		}
	}
	ops = append(ops, store.Put(bucketDocs, postID, kv.MustJSON(terms)))
	for _, t := range old {
		if !slices.Contains(terms, t) {
			ops = append(ops, store.Delete(bucketTerms, kv.Join(t, postID)))
		}
	}
	return s.apply(ctx, ops)
}

// Remove drops a post from the index; removing twice is not an error.
func (s *Service) Remove(ctx context.Context, postID string) error {
	old, err := s.docTerms(ctx, postID)
	if err != nil {
		return err
	}
	var ops []store.Op
	for _, t := range old {
		ops = append(ops, store.Delete(bucketTerms, kv.Join(t, postID)))
	}
	ops = append(ops, store.Delete(bucketDocs, postID))
	return s.apply(ctx, ops)
}

func (s *Service) apply(ctx context.Context, ops []store.Op) error {
	for len(ops) > 0 {
		n := min(len(ops), opsPerTxn)
		if _, err := s.st.Txn(ctx, ops[:n]...); err != nil {
			return fmt.Errorf("search: index: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

func (s *Service) docTerms(ctx context.Context, postID string) ([]string, error) {
	raw, err := s.st.Get(ctx, bucketDocs, postID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("search: read doc: %w", err)
	}
	var terms []string
	if err := json.Unmarshal(raw, &terms); err != nil {
		return nil, fmt.Errorf("search: decode doc %s: %w", postID, err)
	}
	return terms, nil
}

// Query returns the ids of posts containing every word of q, newest first,
// at most limit of them.
func (s *Service) Query(ctx context.Context, q string, limit int) ([]string, error) {
	terms := Terms(q)
	if len(terms) == 0 {
		return nil, nil
	}
	if len(terms) > MaxQueryTerms {
		terms = terms[:MaxQueryTerms]
	}
	var hits []string
	for i, t := range terms {
		pairs, _, err := kv.Page(ctx, s.st, bucketTerms, t+"/", 0, MaxTermPosts, true)
		if err != nil {
			return nil, fmt.Errorf("search: query: %w", err)
		}
		got := make(map[string]bool, len(pairs))
		for _, p := range pairs {
			id := strings.TrimPrefix(p.Key, t+"/")
			got[id] = true
			if i == 0 {
				hits = append(hits, id)
			}
		}
		hits = slices.DeleteFunc(hits, func(id string) bool { return !got[id] })
		if len(hits) == 0 {
			return nil, nil
		}
	}
	if len(hits) > limit {
		hits = hits[:limit]
	}
	return hits, nil
}
