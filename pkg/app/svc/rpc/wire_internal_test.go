package rpc

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/svc"
)

// The table is one to one: a code has one status and one error, and no
// two codes decode to the same error.
func TestCodesTable(t *testing.T) {
	names := map[string]bool{}
	errs := map[error]string{}
	for _, c := range codes {
		if names[c.name] {
			t.Errorf("code %s listed twice", c.name)
		}
		names[c.name] = true
		if http.StatusText(c.status) == "" || c.status < 400 {
			t.Errorf("code %s: status %d is not an error status", c.name, c.status)
		}
		if c.err == nil {
			continue
		}
		if other, dup := errs[c.err]; dup {
			t.Errorf("codes %s and %s decode to the same error %v", other, c.name, c.err)
		}
		errs[c.err] = c.name
	}
	for _, s := range []error{svc.ErrNotFound, svc.ErrExists, svc.ErrBadCredentials, svc.ErrForbidden,
		svc.ErrConflict, svc.ErrUnsupported, svc.ErrTooLarge} {
		if _, ok := errs[s]; !ok {
			t.Errorf("svc's %v has no code", s)
		}
	}
}

func FuzzDecodeError(f *testing.F) {
	for _, c := range codes {
		b, _ := json.Marshal(WireError{Error: "x", Code: c.name})
		f.Add(c.status, b)
		b, _ = json.Marshal(WireError{Error: "x", Code: c.name, Field: "title"})
		f.Add(c.status, b)
	}
	f.Add(502, []byte("<html>bad gateway</html>"))
	f.Add(404, []byte(`{"error":"x","code":"no_such_code"}`))
	f.Add(503, []byte(`{"error":`))
	f.Add(200, []byte(nil))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		we, err := decodeError(status, body, nil)
		if err == nil {
			t.Fatalf("decodeError(%d, %q) = nil error", status, body)
		}
		// Whatever the wire said, the caller's error and the body it shows
		// encode back to the same code: one table in both directions.
		if c, ok := codeNamed(we.Code, nil); ok {
			if c.hop {
				// Another hop's failure is this one's internal error.
				c, _ = codeNamed("internal", nil)
				we.Field = ""
			}
			gotStatus, again := encodeError(err, nil)
			if again.Code != c.name || gotStatus != c.status {
				t.Fatalf("decodeError(%d, %q) = %v, which encodes as %d %q, want %d %q", status, body, err, gotStatus, again.Code, c.status, c.name)
			}
			if again.Field != we.Field {
				t.Fatalf("field %q came back as %q", we.Field, again.Field)
			}
		}
	})
}

func TestEncodeError(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
		msg    string
	}{
		{errors.New("disk on fire at /var/lib/x"), 500, "internal", "internal error"},
		{svc.Invalid("title", "is empty"), 400, "invalid", "is empty"},
		{&svc.FieldError{Field: "email", Msg: "is taken", Err: svc.ErrExists}, 409, "exists", "is taken"},
		// A handler's own call to another service that failed on that hop.
		{&Error{Service: "users", Method: "get", Status: 401, err: ErrUnauthorized}, 500, "internal", "internal error"},
		{&Error{Service: "users", Method: "get", Status: 404, err: svc.ErrNotFound, Wire: WireError{Error: "not found"}}, 404, "not_found", "users.get on : not found"},
	}
	for _, tt := range tests {
		status, we := encodeError(tt.err, nil)
		if status != tt.status || we.Code != tt.code || we.Error != tt.msg {
			t.Errorf("encodeError(%v) = %d %+v, want %d %s %q", tt.err, status, we, tt.status, tt.code, tt.msg)
		}
	}
}

func TestTimeoutHeader(t *testing.T) {
	for _, tt := range []struct {
		left time.Duration
		want string
	}{{1500 * time.Millisecond, "1500"}, {1999 * time.Microsecond, "1"}, {10 * time.Microsecond, "1"}} {
		if got := timeoutValue(tt.left); got != tt.want {
			t.Errorf("timeoutValue(%v) = %s, want %s", tt.left, got, tt.want)
		}
	}
	for _, bad := range []string{"", "0", "-5", "1.5", "abc", "99999999999"} {
		if _, err := parseTimeout(bad); err == nil {
			t.Errorf("parseTimeout(%q) = nil error", bad)
		}
	}
	if d, err := parseTimeout("250"); err != nil || d != 250*time.Millisecond {
		t.Errorf("parseTimeout(250) = %v, %v", d, err)
	}
}

func TestTrail(t *testing.T) {
	tr := &Trail{}
	tr.add("content-1, users-2")
	tr.add("users-2")
	tr.add(" search-1 ,, content-1")
	if got, want := tr.String(), "content-1, users-2, search-1"; got != want {
		t.Fatalf("Trail = %q, want %q: each instance once, in the order first seen", got, want)
	}
}
