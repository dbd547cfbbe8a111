package node_test

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/node"
	"github.com/scalestack/scalestack/pkg/settings"
)

// Every setting of `node run` says what it does, belongs to a role, has
// an environment variable, and carries its role's prefix unless it is the
// node's own or a lever.
func TestEverySettingIsDescribed(t *testing.T) {
	cfg := node.DefaultConfig()
	tbl := cfg.Settings()
	prefix := map[string]string{
		node.RoleLB: "lb-", node.RoleApp: "app-", "store": "store-", node.RoleCache: "cache-", node.RoleEdge: "edge-",
		node.RoleWorker: "worker-", "gossip": "gossip-", "nats": "nats", "admin": "admin-",
	}
	ss := tbl.Settings()
	if len(ss) < 100 {
		t.Fatalf("the table has %d settings, want every flag of node run (over 100)", len(ss))
	}
	for _, s := range ss {
		if strings.TrimSpace(s.Usage) == "" {
			t.Errorf("--%s has no usage", s.Name)
		}
		if s.Role == "" {
			t.Errorf("--%s has no role", s.Name)
		}
		if env := tbl.Env(s.Name); env != "NODE_"+strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_")) {
			t.Errorf("--%s has environment variable %q", s.Name, env)
		}
		if p, ok := prefix[s.Role]; ok && !s.Lever && !strings.HasPrefix(s.Name, p) {
			t.Errorf("--%s of role %s lacks the prefix %q", s.Name, s.Role, p)
		}
		if s.Lever && strings.Contains(s.Name, "-") {
			t.Errorf("lever --%s is not one short word", s.Name)
		}
	}
	var levers []string
	for _, s := range ss {
		if s.Lever {
			levers = append(levers, s.Name)
		}
	}
	if got, want := strings.Join(levers, " "), "sticky reads cache sessions jobs group"; got != want {
		t.Errorf("levers = %q, want %q", got, want)
	}
}

// Every former name of a setting still sets it, on the command line and
// in the environment, with a one-line warning naming the new flag.
func TestDeprecatedNamesStillWork(t *testing.T) {
	examples := map[string]string{} // a valid value per new name, where the default will not do
	examples["lb-backends"] = "127.0.0.1:1"
	examples["edge-origin"] = "http://127.0.0.1:8080"
	examples["app-trusted-proxies"] = "10.0.0.0/8"
	var n int
	for _, s := range func() []settings.Setting { c := node.DefaultConfig(); return c.Settings().Settings() }() {
		for _, old := range s.Deprecated {
			n++
			value := examples[s.Name]
			if value == "" {
				c := node.DefaultConfig()
				value = c.Settings().Default(s.Name)
			}
			cfg := node.DefaultConfig()
			tbl := cfg.Settings()
			var warnings strings.Builder
			tbl.SetWarnings(&warnings)
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			tbl.Register(fs)
			if err := tbl.Parse(fs, []string{"--" + old + "=" + value}); err != nil {
				t.Errorf("--%s=%s: %v", old, value, err)
				continue
			}
			want := "warning: --" + old + " is deprecated: use --" + s.Name + "\n"
			if warnings.String() != want {
				t.Errorf("--%s warned %q, want %q", old, warnings.String(), want)
			}

			cfg = node.DefaultConfig()
			tbl = cfg.Settings()
			warnings.Reset()
			tbl.SetWarnings(&warnings)
			env := map[string]string{tbl.Env(old): value}
			lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
			if err := tbl.ApplyEnv(lookup, nil); err != nil {
				t.Errorf("%s=%s: %v", tbl.Env(old), value, err)
			}
			if !strings.Contains(warnings.String(), "use "+tbl.Env(s.Name)+" (--"+s.Name+")") {
				t.Errorf("%s warned %q, want it to name %s", tbl.Env(old), warnings.String(), tbl.Env(s.Name))
			}
		}
	}
	if n < 20 {
		t.Errorf("%d former names, want every renamed flag's (over 20)", n)
	}
}

// A former name sets the same field as the new one.
func TestDeprecatedNameSetsTheField(t *testing.T) {
	cfg := node.DefaultConfig()
	tbl := cfg.Settings()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tbl.Register(fs)
	args := []string{"--backends", "127.0.0.1:1,127.0.0.1:2", "--sync=1", "--failover", "--purge=off", "--bcrypt-cost=4", "--smtp", "127.0.0.1:25"}
	if err := tbl.Parse(fs, args); err != nil {
		t.Fatal(err)
	}
	rc := cfg.RoleConfig
	if len(rc.LB.Backends) != 2 || rc.Store.Sync != 1 || !rc.Store.Failover || rc.App.Purge != "off" || rc.App.BcryptCost != 4 || rc.Worker.SMTP != "127.0.0.1:25" {
		t.Errorf("after %q: lb %v, store sync %d failover %v, app purge %s bcrypt %d, worker smtp %q",
			args, rc.LB.Backends, rc.Store.Sync, rc.Store.Failover, rc.App.Purge, rc.App.BcryptCost, rc.Worker.SMTP)
	}
}

// A bad mode is refused when the flag is parsed, naming the flag, its
// variable and the choices.
func TestModeRefusedAtParse(t *testing.T) {
	for _, tt := range []struct{ arg, want string }{
		{"--nats=maybe", `--nats (NODE_NATS): "maybe": want auto, on or off`},
		{"--jobs=later", `--jobs (NODE_JOBS): "later": want inline or queue`},
		{"--lb-policy=random", `--lb-policy (NODE_LB_POLICY): "random": want round-robin, weighted or least-conn`},
		{"--app-rate-limit=no", `--app-rate-limit (NODE_APP_RATE_LIMIT): "no": want on or off`},
		{"--lb-retries=some", `--lb-retries (NODE_LB_RETRIES): "some" is not a whole number`},
	} {
		cfg := node.DefaultConfig()
		tbl := cfg.Settings()
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		tbl.Register(fs)
		if err := tbl.Parse(fs, []string{tt.arg}); err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%s) = %v, want %s", tt.arg, err, tt.want)
		}
	}
}
