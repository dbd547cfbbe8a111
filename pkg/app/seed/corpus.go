package seed

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

var names = strings.Fields(`ada grace linus barbara ken dennis margaret edsger donald frances
radia leslie john sophie tim alan katherine niklaus bjarne guido anita hedy annie james`)

// handleFor returns the i-th author's handle: a name, with a number once
// the names run out.
func handleFor(i int) string {
	if i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("%s%d", names[i%len(names)], i/len(names))
}

var topics = []string{"databases", "caching", "go", "networking", "scaling", "replication",
	"queues", "observability", "cdn", "load-balancing", "testing", "performance", "design", "ops"}

var titleStarts = []string{"Notes on", "What I learned about", "A gentle introduction to", "Ten mistakes with",
	"Why we rewrote", "The hidden cost of", "Debugging", "Measuring", "A week of", "Rethinking"}

var titleEnds = []string{"connection pools", "cache invalidation", "write-ahead logs", "health checks",
	"tail latency", "sticky sessions", "leader election", "backpressure", "idempotent jobs",
	"read replicas", "consistent hashing", "graceful shutdown", "request coalescing", "group commit"}

var words = strings.Fields(`the a system request replica primary cache node latency throughput
queue worker log client server state session write read commit lease epoch shard key value
budget timeout retry failure recovery snapshot stream batch disk memory network packet user
page feed post comment follower metric histogram percentile load balancer edge origin
quickly slowly carefully rarely always never often eventually safely simply
grows fails recovers waits returns ships stores evicts serves measures retries drains
small large stale fresh durable cheap expensive hot cold busy idle healthy`)

// sentence returns n words starting with a capital and ending with a stop.
func sentence(rng *rand.Rand, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[rng.IntN(len(words))]
	}
	s := strings.Join(ws, " ")
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

func paragraph(rng *rand.Rand) string {
	var b strings.Builder
	for i := 2 + rng.IntN(5); i > 0; i-- {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		s := sentence(rng, 6+rng.IntN(14))
		if rng.IntN(6) == 0 {
			// Emphasise one word now and then.
			f := strings.Fields(s)
			k := rng.IntN(len(f))
			f[k] = "**" + strings.TrimSuffix(f[k], ".") + "**" + map[bool]string{true: ".", false: ""}[strings.HasSuffix(f[k], ".")]
			s = strings.Join(f, " ")
		}
		b.WriteString(s)
	}
	return b.String()
}

type postInput struct {
	Title     string   `json:"title"`
	Body      string   `json:"body"`
	Tags      []string `json:"tags"`
	Published bool     `json:"published"`
}

// newPost makes a post from one line to a long read with sections, lists,
// code and quotes.
func newPost(rng *rand.Rand) postInput {
	title := titleStarts[rng.IntN(len(titleStarts))] + " " + titleEnds[rng.IntN(len(titleEnds))]
	var b strings.Builder
	switch size := rng.IntN(10); {
	case size < 2: // a short note
		b.WriteString(paragraph(rng))
	case size < 8: // a normal post
		for i := 2 + rng.IntN(3); i > 0; i-- {
			b.WriteString(paragraph(rng) + "\n\n")
		}
		if rng.IntN(2) == 0 {
			for i := 2 + rng.IntN(3); i > 0; i-- {
				b.WriteString("- " + sentence(rng, 3+rng.IntN(6)) + "\n")
			}
			b.WriteString("\n")
		}
		b.WriteString(paragraph(rng))
	default: // a long read with sections
		for s := 1; s <= 3+rng.IntN(3); s++ {
			fmt.Fprintf(&b, "## %s\n\n", strings.TrimSuffix(sentence(rng, 2+rng.IntN(3)), "."))
			for i := 1 + rng.IntN(3); i > 0; i-- {
				b.WriteString(paragraph(rng) + "\n\n")
			}
			switch rng.IntN(4) {
			case 0:
				b.WriteString("```go\nfor attempt := 0; attempt < 3; attempt++ {\n\tif err := call(ctx); err == nil {\n\t\treturn nil\n\t}\n}\n```\n\n")
			case 1:
				b.WriteString("> " + sentence(rng, 8+rng.IntN(8)) + "\n\n")
			case 2:
				for i := 1; i <= 3; i++ {
					fmt.Fprintf(&b, "%d. %s\n", i, sentence(rng, 4+rng.IntN(5)))
				}
				b.WriteString("\n")
			}
		}
	}
	var tags []string
	for _, i := range rng.Perm(len(topics))[:1+rng.IntN(3)] {
		tags = append(tags, topics[i])
	}
	return postInput{Title: title, Body: strings.TrimSpace(b.String()), Tags: tags}
}
