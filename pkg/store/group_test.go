package store_test

import (
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/store"
)

func TestParseGroup(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", store.DefaultGroup, true},
		{"default", store.DefaultGroup, true},
		{"content", "content", true},
		{"users-2", "users-2", true},
		{"9lives", "9lives", true},
		{"-x", "", false},
		{"Content", "", false},
		{"a_b", "", false},
		{"a b", "", false},
		{"a=b", "", false},
		{strings.Repeat("x", 32), strings.Repeat("x", 32), true},
		{strings.Repeat("x", 33), "", false},
	} {
		got, err := store.ParseGroup(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseGroup(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestInGroup(t *testing.T) {
	all := store.StaticResolver{
		{Name: "db-1", Group: ""},
		{Name: "c-1", Group: "content"},
		{Name: "replica-1", Group: "default"},
		{Name: "c-2", Group: "content"},
	}
	for _, tc := range []struct {
		group string
		want  []string
	}{
		{"", []string{"db-1", "replica-1"}},
		{"default", []string{"db-1", "replica-1"}},
		{"content", []string{"c-1", "c-2"}},
		{"users", nil},
	} {
		var got []string
		for _, n := range store.InGroup(all, tc.group).StoreNodes() {
			got = append(got, n.Name)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("InGroup(%q) = %v, want %v", tc.group, got, tc.want)
		}
	}
	if len(all) != 4 || all[1].Name != "c-1" {
		t.Errorf("InGroup changed the resolver's list: %v", all)
	}
}
