package settings_test

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/settings"
)

type config struct {
	Retries int
	Base    time.Duration
	Max     time.Duration
	Mode    settings.OnOff
	Secret  string
	Size    int64
}

func table(c *config) *settings.Table {
	t := settings.New("TEST", settings.Group{Role: settings.LeversGroup, Title: "Levers"}, settings.Group{Role: "lb", Title: "LB", Doc: "The lb."})
	t.Add(
		settings.Setting{Name: "mode", Role: "lb", Lever: true, Field: "Mode", Usage: "a switch: on or off", Value: &c.Mode},
		settings.Setting{Name: "lb-retries", Role: "lb", Field: "Retries", Usage: "retries | count", Value: settings.Int(&c.Retries)}.Formerly("retries"),
		settings.Setting{Name: "lb-base", Role: "lb", Field: "Base", Usage: "base", Value: settings.Duration(&c.Base)},
		settings.Setting{Name: "lb-max", Role: "lb", Field: "Max", Usage: "max", Value: settings.Duration(&c.Max)},
		settings.Setting{Name: "lb-secret", Role: "lb", Field: "Secret", Usage: "secret", Value: settings.String(&c.Secret)},
		settings.Setting{Name: "lb-size", Role: "lb", Field: "Size", Usage: "size", Value: settings.Bytes(&c.Size)},
	)
	return t
}

func TestExplainNamesFlagAndEnv(t *testing.T) {
	c := config{}
	tbl := table(&c)
	err := settings.Errorf("lb config", "Max", "%v is below Base %v", time.Second, 2*time.Second)
	if got, want := err.Error(), "lb config: Max: 1s is below Base 2s"; got != want {
		t.Errorf("FieldError = %q, want %q", got, want)
	}
	got := tbl.Explain("lb", err)
	if want := "--lb-max (TEST_LB_MAX): 1s is below --lb-base 2s"; got.Error() != want {
		t.Errorf("Explain = %q, want %q", got, want)
	}
	var fe *settings.FieldError
	if !errors.As(got, &fe) || fe.Field != "Max" {
		t.Errorf("Explain lost the FieldError: %#v", got)
	}
	// Another role's field, or a plain error, is left as it is.
	if got := tbl.Explain("cache", err); got != error(err) {
		t.Errorf("Explain(cache) = %v, want the error unchanged", got)
	}
	plain := errors.New("lb config: Addr is empty")
	if got := tbl.Explain("lb", plain); got != plain {
		t.Errorf("Explain(plain) = %v, want it unchanged", got)
	}
	nested := settings.Within("app config", "Tier", settings.Errorf("tier config", "TTL", "0s"))
	if got, want := nested.Error(), "app config: Tier.TTL: 0s"; got != want {
		t.Errorf("Within = %q, want %q", got, want)
	}
}

func TestParseAndEnv(t *testing.T) {
	c := config{Retries: 2, Mode: settings.Off}
	tbl := table(&c)
	var warn strings.Builder
	tbl.SetWarnings(&warn)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tbl.Register(fs)
	if err := tbl.Parse(fs, []string{"--retries", "5", "--lb-size=64KiB"}); err != nil {
		t.Fatal(err)
	}
	if warn.String() != "warning: --retries is deprecated: use --lb-retries\n" {
		t.Errorf("warning %q", warn.String())
	}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TEST_LB_RETRIES": "9", "TEST_MODE": "on", "TEST_LB_SECRET_FILE": secret, "TEST_LB_MAX": "3s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	readFile := func(p string) (string, error) { b, err := os.ReadFile(p); return strings.TrimSpace(string(b)), err }
	if err := tbl.ApplyEnv(lookup, readFile); err != nil {
		t.Fatal(err)
	}
	// The command line wins over the environment, under either name.
	if c.Retries != 5 || c.Mode != settings.On || c.Secret != "s3cret" || c.Max != 3*time.Second || c.Size != 64<<10 {
		t.Errorf("config = %+v", c)
	}
	env = map[string]string{"TEST_MODE": "maybe"}
	err := tbl.ApplyEnv(lookup, readFile)
	if err == nil || err.Error() != `--mode (TEST_MODE): "maybe": want on or off` {
		t.Errorf("ApplyEnv(bad) = %v", err)
	}
}

func TestHelpAndMarkdown(t *testing.T) {
	c := config{Retries: 2, Mode: settings.Off, Size: 1 << 20}
	tbl := table(&c)
	var help, md strings.Builder
	tbl.Usage(&help)
	for _, want := range []string{"Levers:\n  --mode  [TEST_MODE]", "--lb-retries  [TEST_LB_RETRIES]\n      retries | count (default 2) (formerly --retries)", "(default 1MiB)"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, help.String())
		}
	}
	tbl.Markdown(&md, "# Flags\n")
	for _, want := range []string{"## LB\n\nThe lb.\n", "| `--lb-retries` | `TEST_LB_RETRIES` | `2` | retries \\| count Formerly `--retries`. |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}

func TestBytes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{{"65536", 65536}, {"64KiB", 64 << 10}, {"1 GiB", 1 << 30}, {"2m", 2 << 20}, {"3KB", 3 << 10}} {
		got, err := settings.ParseBytes(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"lots", "-1", "1TB", ""} {
		if _, err := settings.ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
		}
	}
	for n, want := range map[int64]string{0: "0", 1000: "1000", 1024: "1KiB", 3 << 20: "3MiB", 4 << 30: "4GiB", 1536: "1536"} {
		if got := settings.FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestOneOf(t *testing.T) {
	if v, err := settings.OneOf("b", "a", "b"); err != nil || v != "b" {
		t.Errorf("OneOf(b) = %q, %v", v, err)
	}
	if _, err := settings.OneOf("z", "a", "b", "c"); err == nil || err.Error() != `"z": want a, b or c` {
		t.Errorf("OneOf(z) = %v", err)
	}
}

func TestAddRefusesMistakes(t *testing.T) {
	for name, s := range map[string]settings.Setting{
		"no group": {Name: "x", Role: "nowhere", Usage: "u", Value: settings.String(new(string))},
		"no value": {Name: "y", Role: "lb", Usage: "u"},
		"twice":    {Name: "lb-retries", Role: "lb", Usage: "u", Value: settings.Int(new(int))},
		"old name": {Name: "z", Role: "lb", Usage: "u", Value: settings.Int(new(int)), Deprecated: []string{"retries"}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Add did not panic", name)
				}
			}()
			table(&config{}).Add(s)
		}()
	}
}
