package seed

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
)

// The plan is what a seed writes, worked out before anything is sent. Post
// n depends only on the options and n, never on what the blog holds or on
// the posts after it, so a larger --posts extends the same plan and a run
// can skip what an earlier one wrote.

// maxDraftsPerAuthor bounds one seed's drafts per author: an author's own
// API page lists their newest 50 drafts, and the seed must see every draft
// it wrote to stay idempotent.
const maxDraftsPerAuthor = 10

// Streams of the random generator, one per decision, so that adding a kind
// of decision never shifts another.
const (
	streamPost    = 0x5eed_0000_0000_0000
	streamFollows = 0xf011_0000_0000_0000
	streamTitles  = 0x717e_0000_0000_0000
	streamCovers  = 0xc0fe_0000_0000_0000
)

// plannedPost is one post the seed makes sure exists.
type plannedPost struct {
	key      string // in the body, invisible in the page: how a re-run finds it
	author   int
	post     postInput
	cover    bool // whether the post has a cover image (coverOf draws it)
	comments []plannedComment
}

type plannedComment struct {
	author int
	body   string
}

type postInput struct {
	Title     string   `json:"title"`
	Body      string   `json:"body"`
	Tags      []string `json:"tags"`
	Published bool     `json:"published"`
}

// keyLine marks a seeded post: a Markdown link reference definition, which
// renders as nothing. It is the body's last line, after enough text that
// the excerpt (the first 240 characters) never reaches it.
var keyLine = regexp.MustCompile(`(?m)^\[seed\]: #(seed-\d+-post-\d+)\s*$`)

func postKey(seed uint64, n int) string { return fmt.Sprintf("seed-%d-post-%d", seed, n) }

// keyOf returns the seed key in a post's body, or "".
func keyOf(body string) string {
	if m := keyLine.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

// plan works out the posts of opts (with defaults applied).
func (c *corpus) plan(opts Options) []plannedPost {
	// The titles, shuffled once per seed and dealt in order: the first
	// len(titles) posts all have different ones, the next are "part 2".
	type title struct{ topic, i int }
	var titles []title
	for ti, t := range c.topics {
		for i := range t.titles {
			titles = append(titles, title{ti, i})
		}
	}
	order := rand.New(rand.NewPCG(opts.Seed, streamTitles)).Perm(len(titles))

	// Who writes on each topic among the first opts.Authors; anyone when
	// none of them does.
	writers := make([][]int, len(c.topics))
	for ti := range writers {
		for a := range opts.Authors {
			if slices.Contains(c.author(a).topics, ti) {
				writers[ti] = append(writers[ti], a)
			}
		}
		if len(writers[ti]) == 0 {
			for a := range opts.Authors {
				writers[ti] = append(writers[ti], a)
			}
		}
	}

	drafts := make([]int, opts.Authors)
	posts := make([]plannedPost, opts.Posts)
	for n := range posts {
		rng := rand.New(rand.NewPCG(opts.Seed, streamPost+uint64(n)))
		tt := titles[order[n%len(titles)]]
		t := &c.topics[tt.topic]
		p := plannedPost{key: postKey(opts.Seed, n)}

		p.author = writers[tt.topic][rng.IntN(len(writers[tt.topic]))]
		me := c.author(p.author)

		p.post.Title = t.titles[tt.i]
		if round := n / len(titles); round > 0 {
			p.post.Title += fmt.Sprintf(" (part %d)", round+1)
		}
		p.post.Body = c.body(rng, t, t.intros[tt.i], me) + "\n\n[seed]: #" + p.key
		p.post.Tags = []string{t.name}
		for _, i := range rng.Perm(len(t.tags))[:rng.IntN(min(3, len(t.tags)+1))] {
			p.post.Tags = append(p.post.Tags, t.tags[i])
		}
		p.post.Published = true
		if rng.Float64() < opts.Drafts && drafts[p.author] < maxDraftsPerAuthor {
			p.post.Published = false
			drafts[p.author]++
		}
		p.cover = opts.ImageEvery > 0 && n%opts.ImageEvery == 0
		if p.post.Published {
			pool := append(slices.Clone(t.comments), c.comments...)
			picks := rng.Perm(len(pool))
			for k := range min(rng.IntN(opts.MaxComments+1), len(pool)) {
				who := rng.IntN(opts.Authors)
				if who == p.author && opts.Authors > 1 {
					who = (who + 1) % opts.Authors
				}
				p.comments = append(p.comments, plannedComment{author: who, body: pool[picks[k]]})
			}
		}
		posts[n] = p
	}
	return posts
}

// coverOf draws post n's cover image, only when it is uploaded: drawing
// costs more than planning a hundred posts.
func coverOf(seed uint64, n int) []byte {
	return cover(rand.New(rand.NewPCG(seed, streamCovers+uint64(n))))
}

// follows returns, for each author, the authors they follow.
func follows(opts Options) [][]int {
	rng := rand.New(rand.NewPCG(opts.Seed, streamFollows))
	out := make([][]int, opts.Authors)
	for i := range out {
		for _, j := range rng.Perm(opts.Authors) {
			if j != i && len(out[i]) < opts.Follows {
				out[i] = append(out[i], j)
			}
		}
	}
	return out
}

// body puts a post together: the title's opening sentence and a paragraph,
// then either a few more paragraphs with perhaps a list, a code block, a
// quote or a table, or, for one post in five, a long read in sections; and
// the author's signature.
func (c *corpus) body(rng *rand.Rand, t *topic, intro string, me persona) string {
	paras := rng.Perm(len(t.paragraphs))
	next := func() string {
		p := t.paragraphs[paras[0]]
		paras = paras[1:]
		return p
	}
	list := func(b *strings.Builder) {
		fmt.Fprintf(b, "%s\n\n", c.leadIns[rng.IntN(len(c.leadIns))])
		numbered := rng.IntN(3) == 0
		for i, k := range rng.Perm(len(t.items))[:3+rng.IntN(3)] {
			if numbered {
				fmt.Fprintf(b, "%d. %s\n", i+1, t.items[k])
			} else {
				fmt.Fprintf(b, "- %s\n", t.items[k])
			}
		}
		b.WriteString("\n")
	}
	extra := func(b *strings.Builder) {
		if len(t.extras) > 0 {
			b.WriteString(t.extras[rng.IntN(len(t.extras))] + "\n\n")
		}
	}

	var b strings.Builder
	b.WriteString(intro + "\n\n" + next() + "\n\n")
	switch size := rng.IntN(10); {
	case size < 2: // a short note: two paragraphs
		b.WriteString(next() + "\n\n")
	case size < 8: // a normal post
		for i := 1 + rng.IntN(2); i > 0; i-- {
			b.WriteString(next() + "\n\n")
		}
		switch rng.IntN(3) {
		case 0:
			list(&b)
		case 1:
			extra(&b)
		}
		b.WriteString(next() + "\n\n")
	default: // a long read in sections
		for _, h := range rng.Perm(len(t.headings))[:2+rng.IntN(2)] {
			if len(paras) < 2 {
				break
			}
			fmt.Fprintf(&b, "## %s\n\n%s\n\n", t.headings[h], next())
			switch rng.IntN(3) {
			case 0:
				list(&b)
			case 1:
				extra(&b)
			default:
				b.WriteString(next() + "\n\n")
			}
		}
	}
	fmt.Fprintf(&b, "*%s %s*", me.name, me.bio)
	return b.String()
}
