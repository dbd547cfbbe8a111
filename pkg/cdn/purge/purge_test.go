package purge_test

import (
	"reflect"
	"testing"

	"github.com/scalestack/scalestack/pkg/cdn/purge"
)

func TestEncodeDecode(t *testing.T) {
	tests := []struct {
		m    purge.Message
		want string
	}{
		{purge.Message{URLs: []string{"/p/1"}, Keys: []string{"post-1", "home"}}, `{"urls":["/p/1"],"keys":["post-1","home"]}`},
		{purge.Message{All: true}, `{"all":true}`},
		{purge.Message{}, `{}`},
	}
	for _, tt := range tests {
		data, err := purge.Encode(tt.m)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", tt.m, err)
		}
		if string(data) != tt.want {
			t.Errorf("Encode(%+v) = %s, want %s", tt.m, data, tt.want)
		}
		got, err := purge.Decode(data)
		if err != nil {
			t.Fatalf("Decode(%s): %v", data, err)
		}
		if !reflect.DeepEqual(got, tt.m) {
			t.Errorf("Decode(%s) = %+v, want %+v", data, got, tt.m)
		}
	}
	if _, err := purge.Decode([]byte("not json")); err == nil {
		t.Error(`Decode("not json") = nil error, want one`)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"urls":["/a"],"keys":["k"],"all":true}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := purge.Decode(data)
		if err != nil {
			return
		}
		again, err := purge.Encode(m)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", data, err)
		}
		// Compared encoded: an empty list decodes to an empty slice and
		// comes back as nil, which encode the same.
		m2, err := purge.Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))): %v", data, err)
		}
		if twice, _ := purge.Encode(m2); string(twice) != string(again) {
			t.Fatalf("round trip of %q: %s then %s", data, again, twice)
		}
	})
}
