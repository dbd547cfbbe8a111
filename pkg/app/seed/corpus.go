package seed

import (
	"embed"
	"fmt"
	"strconv"
	"strings"
)

// The corpus is plain text written for the seed: who the authors are
// (authors.txt), and per topic (topic-NAME.txt) the titles, paragraphs,
// list items, code, quotes and comments that posts are put together from.
// A file is "== section" lines, each followed by one entry a line, or by
// blocks separated by blank lines (paragraphs, extras).
//
//go:embed corpus/*.txt
var corpusFiles embed.FS

// persona is one author: a handle to log in with, a name and a bio for the
// signature line under their posts, and the topics they write about.
type persona struct {
	handle, name, bio string
	topics            []int
}

// topic is one subject's material. Titles (each with the sentence that
// opens its post), headings, items and comments are one line each;
// paragraphs and extras (code, quotes, tables) are blocks.
type topic struct {
	name                                string
	titles, intros                      []string
	headings, paragraphs, items, extras []string
	comments, tags                      []string
}

// corpus is everything a post is made from.
type corpus struct {
	topics   []topic
	authors  []persona
	leadIns  []string // the sentence before a list
	comments []string // comments that fit any post
}

// loadCorpus parses the embedded files. It fails only if they are broken,
// which the package's tests would have caught.
func loadCorpus() (*corpus, error) {
	read := func(name string) (map[string][]string, error) {
		b, err := corpusFiles.ReadFile("corpus/" + name)
		if err != nil {
			return nil, fmt.Errorf("seed: corpus: %w", err)
		}
		return sections(name, string(b))
	}
	c := &corpus{}
	entries, err := corpusFiles.ReadDir("corpus")
	if err != nil {
		return nil, fmt.Errorf("seed: corpus: %w", err)
	}
	for _, e := range entries { // sorted by name, so topic numbers are stable
		name, ok := strings.CutPrefix(e.Name(), "topic-")
		if !ok {
			continue
		}
		s, err := read(e.Name())
		if err != nil {
			return nil, err
		}
		t := topic{
			name:       strings.TrimSuffix(name, ".txt"),
			headings:   lines(s["headings"]),
			paragraphs: blocks(s["paragraphs"], " "),
			items:      lines(s["items"]),
			extras:     blocks(s["extras"], "\n"),
			comments:   lines(s["comments"]),
			tags:       strings.Fields(strings.Join(s["tags"], " ")),
		}
		for _, l := range lines(s["titles"]) {
			title, intro, ok := strings.Cut(l, " | ")
			if !ok {
				return nil, fmt.Errorf("seed: corpus %s: title %q: want title | opening sentence", e.Name(), l)
			}
			t.titles, t.intros = append(t.titles, title), append(t.intros, intro)
		}
		if len(t.titles) == 0 || len(t.headings) < 3 || len(t.paragraphs) < 8 || len(t.items) < 5 || len(t.comments) == 0 || len(t.tags) == 0 {
			return nil, fmt.Errorf("seed: corpus %s: want titles, 3 headings, 8 paragraphs, 5 items, comments and tags", e.Name())
		}
		c.topics = append(c.topics, t)
	}
	common, err := read("common.txt")
	if err != nil {
		return nil, err
	}
	c.leadIns, c.comments = lines(common["lead-ins"]), lines(common["comments"])
	people, err := read("authors.txt")
	if err != nil {
		return nil, err
	}
	for _, l := range lines(people["authors"]) {
		f := strings.Split(l, "|")
		if len(f) != 4 {
			return nil, fmt.Errorf("seed: corpus authors.txt: %q: want handle | name | topics | bio", l)
		}
		p := persona{handle: strings.TrimSpace(f[0]), name: strings.TrimSpace(f[1]), bio: strings.TrimSpace(f[3])}
		for _, name := range strings.Split(f[2], ",") {
			i := c.topicIndex(strings.TrimSpace(name))
			if i < 0 {
				return nil, fmt.Errorf("seed: corpus authors.txt: %s: no topic %q", p.handle, name)
			}
			p.topics = append(p.topics, i)
		}
		c.authors = append(c.authors, p)
	}
	if len(c.topics) == 0 || len(c.authors) == 0 || len(c.leadIns) == 0 || len(c.comments) == 0 {
		return nil, fmt.Errorf("seed: corpus: want topics, authors, lead-ins and comments")
	}
	return c, nil
}

func (c *corpus) topicIndex(name string) int {
	for i, t := range c.topics {
		if t.name == name {
			return i
		}
	}
	return -1
}

// sections splits a file into its "== name" sections.
func sections(file, text string) (map[string][]string, error) {
	out := map[string][]string{}
	cur := ""
	for i, line := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(line, "== "); ok {
			cur = strings.TrimSpace(name)
			out[cur] = out[cur][:0:0]
			continue
		}
		if cur == "" && strings.TrimSpace(line) != "" {
			return nil, fmt.Errorf("seed: corpus %s:%d: text before the first == section", file, i+1)
		}
		if cur != "" {
			out[cur] = append(out[cur], line)
		}
	}
	return out, nil
}

// lines returns the non-empty lines of a section.
func lines(ls []string) []string {
	var out []string
	for _, l := range ls {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// blocks returns the blank-line separated blocks of a section, their lines
// joined by sep.
func blocks(ls []string, sep string) []string {
	var out, cur []string
	flush := func() {
		if len(cur) > 0 {
			out = append(out, strings.Join(cur, sep))
			cur = nil
		}
	}
	for _, l := range ls {
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		cur = append(cur, strings.TrimRight(l, " \t"))
	}
	flush()
	return out
}

// handleFor returns the i-th author's handle: a persona's, with a number
// once the personas run out.
func (c *corpus) handleFor(i int) string {
	p := c.authors[i%len(c.authors)]
	if i < len(c.authors) {
		return p.handle
	}
	return p.handle + strconv.Itoa(i/len(c.authors))
}

// author returns the i-th author. Past the written personas, names and
// bios are mixed from two of them, so every author reads as a person.
func (c *corpus) author(i int) persona {
	n := len(c.authors)
	if i < n {
		return c.authors[i]
	}
	first, other := c.authors[i%n], c.authors[(i+i/n)%n]
	return persona{
		handle: c.handleFor(i),
		name:   strings.Fields(first.name)[0] + " " + lastName(other.name),
		bio:    other.bio,
		topics: other.topics,
	}
}

func lastName(name string) string {
	f := strings.Fields(name)
	return f[len(f)-1]
}
