package app

import (
	"net/http"
	"net/netip"
	"testing"
)

// Who the rate limits take a request to come from.
func TestClientKey(t *testing.T) {
	lb := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		peer    string
		xff     []string
		proxies []netip.Prefix
		want    string
	}{
		{"192.0.2.1:5000", nil, lb, "192.0.2.1"},
		{"192.0.2.1:5000", []string{"198.51.100.1"}, lb, "192.0.2.1"},              // not from a proxy: header ignored
		{"10.0.0.5:5000", []string{"198.51.100.1"}, lb, "198.51.100.1"},            // from the lb
		{"10.0.0.5:5000", nil, lb, "10.0.0.5"},                                     // the lb sent no header: the lb
		{"10.0.0.5:5000", []string{"1.1.1.1, 198.51.100.1"}, lb, "198.51.100.1"},   // client-written part ignored
		{"10.0.0.5:5000", []string{"1.1.1.1", "198.51.100.1"}, lb, "198.51.100.1"}, // two header lines
		{"10.0.0.5:5000", []string{"198.51.100.1, 127.0.0.3"}, lb, "198.51.100.1"}, // edge, then lb
		{"10.0.0.5:5000", []string{"198.51.100.1, 10.0.0.7, 10.0.0.6"}, lb, "198.51.100.1"},
		{"10.0.0.5:5000", []string{"10.0.0.9"}, lb, "10.0.0.9"}, // only proxies: the first of them
		{"10.0.0.5:5000", []string{"junk, 198.51.100.1"}, lb, "198.51.100.1"},
		{"10.0.0.5:5000", []string{"198.51.100.1, junk"}, lb, "10.0.0.5"}, // unreadable: stop at the last proxy
		{"10.0.0.5:5000", []string{"198.51.100.1:4444"}, lb, "198.51.100.1"},
		{"10.0.0.5:5000", []string{"198.51.100.1"}, nil, "10.0.0.5"}, // no trusted proxies at all
		{"[2001:db8:1:2:3:4:5:6]:5000", nil, lb, "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.1]:5000", nil, lb, "192.0.2.1"},
		{"[::1]:5000", []string{"2001:db8::1"}, []netip.Prefix{netip.MustParsePrefix("::1/128")}, "2001:db8::/64"},
		{"not an address", nil, lb, "unknown"},
	}
	for _, tt := range tests {
		r := &http.Request{RemoteAddr: tt.peer, Header: http.Header{}}
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		l := newLimiter(true, DefaultRateLimits(), tt.proxies)
		if got := l.clientKey(r); got != tt.want {
			t.Errorf("clientKey(peer %s, X-Forwarded-For %q) = %q, want %q", tt.peer, tt.xff, got, tt.want)
		}
	}
}
