package app

import (
	"net/url"
	"strings"
	"testing"
)

// What `next` may send a user to after logging in: only a path on this
// site, however a browser or a proxy reads the value.
func TestLocalPath(t *testing.T) {
	tests := []struct {
		next string
		ok   bool
	}{
		{"/", true},
		{"/posts/1?x=y", true},
		{"/p/1m8e5abcd0000/edit", true},
		{"/search?q=two%20words", true},
		{"/p/abc#c-1", true},
		{"/u/ada?next=//evil.example", true}, // a query is not a host
		{"/javascript:alert(1)", true},       // a path on this site

		{"", false},
		{"/\t/evil.example", false}, // browsers drop the tab: //evil.example
		{"/\n/evil.example", false},
		{"/\r\n/evil.example", false},
		{"/ /evil.example", false},
		{"//evil.example", false},
		{"///evil.example", false},
		{"/\\evil.example", false},
		{"\\\\evil.example", false},
		{"/\\/evil.example", false},
		{"https://evil.example", false},
		{"http:/evil.example", false},
		{"javascript:alert(1)", false},
		{"javascript:", false},
		{"evil.example", false},
		{"./evil", false},
		{"/%09/evil", false},            // decoded once more: /\t/evil
		{"/%2F/evil.example", false},    // decoded once more: //evil.example
		{"/%2f%2fevil.example", false},  // the same, lower case
		{"/%5Cevil.example", false},     // decoded once more: /\evil.example
		{"/%zz", false},                 // not decodable
		{"/p/\x00", false},              // NUL
		{"/p/\x7f", false},              // DEL
		{"/caf\u00e9", false},           // not ASCII: a browser would encode it, we do not guess
		{"/\u3000/evil.example", false}, // ideographic space
		{"/" + strings.Repeat("a", 2048), false},
	}
	for _, tt := range tests {
		got := localPath(tt.next)
		want := "/"
		if tt.ok {
			want = tt.next
		}
		if got != want {
			t.Errorf("localPath(%.80q) = %.80q, want %.80q", tt.next, got, want)
		}
	}
}

// Whatever localPath lets through stays on this site even as a lenient
// browser reads it: tabs and line breaks removed, backslashes as slashes,
// the path decoded once more.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "/posts/1?x=y", "//evil.example", "/\t/evil", "/%2F/x", "/\\x", "https://x", "/a#b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := localPath(next)
		if got == "/" {
			return
		}
		if got != next {
			t.Fatalf("localPath(%q) = %q: neither the input nor /", next, got)
		}
		lenient := strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(got)
		path, _, _ := strings.Cut(lenient, "?")
		path, _, _ = strings.Cut(path, "#")
		decoded, err := url.PathUnescape(path)
		if err != nil {
			t.Fatalf("localPath let %q through, whose path does not decode: %v", next, err)
		}
		for _, p := range []string{lenient, path, decoded} {
			if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
				t.Fatalf("localPath let %q through, read as %q", next, p)
			}
		}
		if u, err := url.Parse(lenient); err != nil || u.Host != "" || u.Scheme != "" {
			t.Fatalf("localPath let %q through, which parses with host %q, scheme %q (%v)", next, u.Host, u.Scheme, err)
		}
	})
}
