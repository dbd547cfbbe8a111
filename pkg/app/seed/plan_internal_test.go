package seed

import (
	"reflect"
	"regexp"
	"testing"
)

func TestCorpus(t *testing.T) {
	c, err := loadCorpus()
	if err != nil {
		t.Fatalf("loadCorpus: %v", err)
	}
	for _, tp := range c.topics {
		for _, p := range tp.paragraphs {
			// A post opens with its intro and a paragraph; the excerpt
			// stops past 240 bytes, so it never reaches the key at the end.
			if len(p) < 260 {
				t.Errorf("topic %s: paragraph of %d bytes, want 260 or more: %q", tp.name, len(p), p)
			}
		}
	}
	handle := regexp.MustCompile(`^[a-z0-9_]{3,20}$`)
	seen := map[string]bool{}
	for i := range 60 {
		a := c.author(i)
		if !handle.MatchString(a.handle) || seen[a.handle] {
			t.Errorf("author %d: handle %q is invalid or taken", i, a.handle)
		}
		seen[a.handle] = true
		if a.name == "" || a.bio == "" || len(a.topics) == 0 {
			t.Errorf("author %d: %+v, want a name, a bio and topics", i, a)
		}
	}
}

func TestPlanExtendsWithPosts(t *testing.T) {
	c, err := loadCorpus()
	if err != nil {
		t.Fatalf("loadCorpus: %v", err)
	}
	opts := Options{Seed: 5, Posts: 150}.withDefaults()
	long := c.plan(opts)
	opts.Posts = 40
	short := c.plan(opts)
	if !reflect.DeepEqual(short, long[:40]) {
		t.Errorf("the first 40 posts of a 150-post plan differ from a 40-post plan")
	}
	tag := regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
	keys := map[string]bool{}
	for n, p := range long {
		if keyOf(p.post.Body) != p.key || keys[p.key] {
			t.Errorf("post %d: key %q, found %q in the body, want it once", n, p.key, keyOf(p.post.Body))
		}
		keys[p.key] = true
		if len(p.post.Title) > 200 || len(p.post.Body) > 60000 || len(p.post.Tags) > 8 {
			t.Errorf("post %d: title %d bytes, body %d, %d tags: over the blog's limits", n, len(p.post.Title), len(p.post.Body), len(p.post.Tags))
		}
		for _, tg := range p.post.Tags {
			if !tag.MatchString(tg) {
				t.Errorf("post %d: tag %q is not valid", n, tg)
			}
		}
	}
	if other := c.plan(Options{Seed: 6, Posts: 150}.withDefaults()); reflect.DeepEqual(other[0].post, long[0].post) {
		t.Errorf("seeds 5 and 6 plan the same first post")
	}
}
