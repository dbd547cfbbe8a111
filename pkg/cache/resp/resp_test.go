package resp_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/cache/resp"
)

func testLimits() resp.Limits {
	return resp.Limits{MaxArgs: 8, MaxBulk: 64, MaxRequest: 256, MaxInline: 64}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // nil with wantN 0: incomplete
		wantN   int
		need    int
		wantErr string
	}{
		{"get", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", []string{"GET", "k"}, 20, 0, ""},
		{"pipelined takes first", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", []string{"PING"}, 14, 0, ""},
		{"binary and empty args", "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$2\r\n\r\n\r\n", []string{"SET", "", "\r\n"}, 27, 0, ""},
		{"empty array", "*0\r\n", nil, 4, 0, ""},
		{"null array", "*-1\r\n", nil, 5, 0, ""},
		{"inline", "SET k  v\r\n", []string{"SET", "k", "v"}, 10, 0, ""},
		{"inline lf only", "PING\n", []string{"PING"}, 5, 0, ""},
		{"inline empty line", "\r\n", nil, 2, 0, ""},
		{"empty", "", nil, 0, 0, ""},
		{"partial header", "*2", nil, 0, 0, ""},
		{"partial header cr", "*2\r", nil, 0, 0, ""},
		{"partial arg header", "*2\r\n$3\r\nGET\r\n$", nil, 0, 0, ""},
		{"partial bulk knows size", "*2\r\n$3\r\nGET\r\n$10\r\nab", nil, 0, 30, ""},
		{"partial inline", "PIN", nil, 0, 0, ""},
		{"bad count", "*x\r\n", nil, 0, 0, "invalid multibulk length"},
		{"too many args", "*9\r\n", nil, 0, 0, "invalid multibulk length"},
		{"huge count", "*99999999999999999999\r\n", nil, 0, 0, "invalid multibulk length"},
		{"header never ends", "*1" + strings.Repeat("1", 40), nil, 0, 0, "invalid multibulk length"},
		{"not a bulk", "*1\r\n:1\r\n", nil, 0, 0, "expected '$', got ':'"},
		{"bad bulk length", "*1\r\n$x\r\n", nil, 0, 0, "invalid bulk length"},
		{"negative bulk", "*1\r\n$-1\r\n", nil, 0, 0, "invalid bulk length"},
		{"bulk over limit", "*1\r\n$65\r\n", nil, 0, 0, "invalid bulk length"},
		{"huge bulk", "*1\r\n$9223372036854775807\r\n", nil, 0, 0, "invalid bulk length"},
		{"request over limit", "*5\r\n$60\r\n" + strings.Repeat("a", 60) + "\r\n$60\r\n" + strings.Repeat("a", 60) + "\r\n$60\r\n" + strings.Repeat("a", 60) + "\r\n$60\r\n", nil, 0, 0, "request larger than 256 bytes"},
		{"bulk without crlf", "*1\r\n$1\r\nabc\r\n", nil, 0, 0, "bulk string not followed by CRLF"},
		{"inline too long", strings.Repeat("a", 65), nil, 0, 0, "too big inline request"},
		{"inline too many args", "a b c d e f g h i\r\n", nil, 0, 0, "invalid multibulk length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, n, need, err := resp.ParseRequest([]byte(tt.in), nil, testLimits())
			if tt.wantErr != "" {
				var pe resp.ProtocolError
				if !errors.As(err, &pe) || string(pe) != tt.wantErr {
					t.Fatalf("ParseRequest(%q) error = %v, want protocol error %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest(%q) error = %v", tt.in, err)
			}
			if n != tt.wantN || need != tt.need {
				t.Fatalf("ParseRequest(%q) n, need = %d, %d, want %d, %d", tt.in, n, need, tt.wantN, tt.need)
			}
			var got []string
			for _, a := range args {
				got = append(got, string(a))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Fatalf("ParseRequest(%q) args = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestAppendReplies(t *testing.T) {
	var b []byte
	b = resp.AppendOK(b)
	b = resp.AppendSimple(b, "PONG")
	b = resp.AppendError(b, "ERR bad\r\nthing")
	b = resp.AppendInt(b, -42)
	b = resp.AppendBulk(b, []byte("hi"))
	b = resp.AppendBulkString(b, "")
	b = resp.AppendNull(b)
	b = resp.AppendArray(b, 2)
	want := "+OK\r\n+PONG\r\n-ERR bad  thing\r\n:-42\r\n$2\r\nhi\r\n$0\r\n\r\n$-1\r\n*2\r\n"
	if string(b) != want {
		t.Fatalf("replies = %q, want %q", b, want)
	}
}

// FuzzRESP checks that the parser never panics, never returns more than the
// limits allow or bytes it was not given, asks for no more than MaxRequest,
// and that every request it can encode parses back to the same arguments.
func FuzzRESP(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"))
	f.Add([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n"))
	f.Add([]byte("PING\r\nECHO hi\r\n"))
	f.Add([]byte("*1\r\n$99999999999\r\n"))
	f.Add([]byte("*-1\r\n*0\r\n\r\n"))
	f.Add([]byte{0, 0xff, '*', '\r', '$'})
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := testLimits()
		// Parse data as a stream of requests until it runs out or breaks.
		var args [][]byte
		for buf := data; len(buf) > 0; {
			var n, need int
			var err error
			args, n, need, err = resp.ParseRequest(buf, args, lim)
			if err != nil {
				if _, ok := err.(resp.ProtocolError); !ok {
					t.Fatalf("error %T %v, want ProtocolError", err, err)
				}
				break
			}
			if len(args) > lim.MaxArgs {
				t.Fatalf("%d args, over MaxArgs %d", len(args), lim.MaxArgs)
			}
			for _, a := range args {
				if len(a) > lim.MaxBulk {
					t.Fatalf("arg of %d bytes, over MaxBulk %d", len(a), lim.MaxBulk)
				}
			}
			if n == 0 {
				if len(args) != 0 {
					t.Fatalf("incomplete request returned %d args", len(args))
				}
				if need > lim.MaxRequest || (need != 0 && need <= len(buf)) {
					t.Fatalf("need = %d with %d buffered, MaxRequest %d", need, len(buf), lim.MaxRequest)
				}
				break
			}
			if n > len(buf) || n > lim.MaxRequest && buf[0] == '*' {
				t.Fatalf("consumed %d of %d bytes", n, len(buf))
			}
			buf = buf[n:]
		}

		// Round trip: split data into arguments and encode them.
		want := bytes.Split(data, []byte{0})
		if len(want) > lim.MaxArgs {
			want = want[:lim.MaxArgs]
		}
		for i, a := range want {
			if len(a) > lim.MaxBulk {
				want[i] = a[:lim.MaxBulk]
			}
		}
		enc := resp.AppendRequest(nil, want...)
		if len(enc) > lim.MaxRequest {
			return
		}
		got, n, _, err := resp.ParseRequest(enc, nil, lim)
		if err != nil || n != len(enc) {
			t.Fatalf("ParseRequest(AppendRequest(%q)) n = %d of %d, err = %v", want, n, len(enc), err)
		}
		if len(got) != len(want) {
			t.Fatalf("round trip gave %d args, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("round trip arg %d = %q, want %q", i, got[i], want[i])
			}
		}
		// Every strict prefix is incomplete, not an error.
		for _, cut := range []int{1, len(enc) / 2, len(enc) - 1} {
			if cut <= 0 || cut >= len(enc) {
				continue
			}
			_, n, _, err := resp.ParseRequest(enc[:cut], nil, lim)
			if n != 0 || err != nil {
				t.Fatalf("prefix %q: n = %d, err = %v, want incomplete", enc[:cut], n, err)
			}
		}
	})
}

func BenchmarkParseRequest(b *testing.B) {
	req := resp.AppendRequest(nil, []byte("SET"), []byte("key:000000012345"), []byte("xxxxxxxxxxxxxxxx"))
	lim := resp.DefaultLimits()
	var args [][]byte
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		args, _, _, _ = resp.ParseRequest(req, args, lim)
	}
}
