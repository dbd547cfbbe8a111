package ids_test

import (
	"sort"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
)

func TestOrderedByTime(t *testing.T) {
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var got []string
	for i := 0; i < 100; i++ {
		got = append(got, ids.At(base.Add(time.Duration(i)*time.Millisecond)))
	}
	if !sort.StringsAreSorted(got) {
		t.Fatalf("ids of increasing times are not sorted: %v", got)
	}
	for _, id := range got {
		if !ids.Valid(id) {
			t.Fatalf("Valid(%q) = false, want true", id)
		}
	}
	if got, want := ids.Time(got[7]), base.Add(7*time.Millisecond); !got.Equal(want) {
		t.Fatalf("Time = %v, want %v", got, want)
	}
}

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", false},
		{"0123456789abc", true},
		{"0123456789abi", false},
		{"0123456789AB0", false},
		{"../../etc/pas", false},
		{"0123456789abcd", false},
	} {
		if got := ids.Valid(tc.in); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
