package consistenthash_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/cachetier/consistenthash"
)

// numericHash reads the key as a number, so a test can place points by hand:
// virtual node i of node "n" sits at i*10 + n ("0#2" -> 2, "1#2" -> 12).
func numericHash(s string) uint64 {
	var rep, node uint64
	if _, err := fmt.Sscanf(s, "%d#%d", &rep, &node); err == nil {
		return rep*10 + node
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

func TestGetTable(t *testing.T) {
	// Nodes 2, 4, 6 with 3 replicas: points 2,4,6, 12,14,16, 22,24,26.
	r := consistenthash.New(3, numericHash, "6", "4", "2")
	tests := []struct{ key, want string }{
		{"0", "2"}, {"2", "2"}, {"3", "4"}, {"11", "2"}, {"13", "4"},
		{"23", "4"}, {"25", "6"}, {"26", "6"},
		{"27", "2"}, // past the last point: wraps to the first
		{"1000", "2"},
	}
	for _, tt := range tests {
		if got := r.Get(tt.key); got != tt.want {
			t.Errorf("Get(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	// Adding node 8 (points 8, 18, 28) takes only the keys just below its points.
	r2 := consistenthash.New(3, numericHash, "2", "4", "6", "8")
	for _, tt := range []struct{ key, want string }{{"27", "8"}, {"7", "8"}, {"17", "8"}, {"3", "4"}, {"25", "6"}} {
		if got := r2.Get(tt.key); got != tt.want {
			t.Errorf("after adding 8: Get(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestEmptyAndDuplicates(t *testing.T) {
	var nilRing *consistenthash.Ring
	if got := nilRing.Get("k"); got != "" {
		t.Errorf("nil ring Get = %q, want empty", got)
	}
	if got := consistenthash.New(0, nil).Get("k"); got != "" {
		t.Errorf("empty ring Get = %q, want empty", got)
	}
	r := consistenthash.New(0, nil, "b", "a", "", "b")
	if got, want := fmt.Sprint(r.Nodes()), "[a b]"; got != want {
		t.Errorf("Nodes() = %s, want %s", got, want)
	}
}

func TestOrderDoesNotMatter(t *testing.T) {
	a := consistenthash.New(0, nil, "127.0.0.2:6379", "127.0.0.3:6379", "127.0.0.4:6379")
	b := consistenthash.New(0, nil, "127.0.0.4:6379", "127.0.0.2:6379", "127.0.0.3:6379")
	for i := 0; i < 1000; i++ {
		k := "post:" + strconv.Itoa(i)
		if a.Get(k) != b.Get(k) {
			t.Fatalf("Get(%q) differs with the order of nodes: %q vs %q", k, a.Get(k), b.Get(k))
		}
	}
}

func nodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.0.%d:6379", i+2)
	}
	return out
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("ss1:post:%08x", i*2654435761)
	}
	return out
}

func TestDistribution(t *testing.T) {
	ks := keys(60000)
	for _, n := range []int{2, 3, 5, 8} {
		r := consistenthash.New(0, nil, nodes(n)...)
		count := map[string]int{}
		for _, k := range ks {
			count[r.Get(k)]++
		}
		fair := float64(len(ks)) / float64(n)
		for _, node := range r.Nodes() {
			share := float64(count[node]) / fair
			if share < 0.8 || share > 1.2 {
				t.Errorf("%d nodes: %s holds %d keys, %.2f of a fair share, want 0.8 to 1.2", n, node, count[node], share)
			}
		}
	}
}

func TestFewKeysMove(t *testing.T) {
	ks := keys(60000)
	for _, n := range []int{2, 3, 4, 6} {
		before := consistenthash.New(0, nil, nodes(n)...)
		after := consistenthash.New(0, nil, nodes(n+1)...)
		added := nodes(n + 1)[n]
		moved := 0
		for _, k := range ks {
			b, a := before.Get(k), after.Get(k)
			if b == a {
				continue
			}
			moved++
			if a != added {
				t.Fatalf("add %s: key %s moved from %s to %s, want moves only to the new node", added, k, b, a)
			}
		}
		frac, want := float64(moved)/float64(len(ks)), 1/float64(n+1)
		if frac < want*0.7 || frac > want*1.3 {
			t.Errorf("add to %d nodes: %.3f of keys moved, want about %.3f", n, frac, want)
		}

		// Removing it again moves back exactly the keys it took.
		for _, k := range ks {
			if after.Get(k) != added && after.Get(k) != before.Get(k) {
				t.Fatalf("remove %s: key %s moved between surviving nodes", added, k)
			}
		}
	}
}

func BenchmarkGet(b *testing.B) {
	r := consistenthash.New(0, nil, nodes(5)...)
	ks := keys(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = r.Get(ks[i&1023])
		i++
	}
}
