// Package settings is the one table of the settings of `node run`: each
// setting's flag name, the role it configures, its usage, its value (a
// flag.Value over the field of the role's Config it sets), the Go field,
// and the names it had before. From the table come the flags, their
// environment variables (NODE_<FLAG>, NODE_<FLAG>_FILE), the grouped help
// of `node run -h`, docs/flags.md, and the translation of a role's
// validation error (a FieldError on a Go field) into the flag that sets
// it.
//
// Each role package declares its settings next to its Config (a Settings
// method); pkg/node puts them together with the node's own into a Table.
// The package is a leaf: it imports nothing of scalestack's.
package settings

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// Value is what a setting holds: the flag package's interface, so that a
// mode type with String and Set is a value as it is.
type Value = flag.Value

// Setting is one setting of a role, given by a flag.
type Setting struct {
	// Name is the flag's name without dashes: "lb-retries". Every flag of a
	// role starts with the role's prefix ("lb-"), but the node's own and
	// the levers.
	Name string
	// Role is the role (or part of the node) the setting configures, the
	// Group it is listed under: "lb", "app", "node".
	Role string
	// Lever marks a stage lever (--sessions, --cache, ...): a setting that
	// a stage of docs/stages.md turns, listed with the other levers instead
	// of under its role, and named without a prefix.
	Lever bool
	// Usage says what the setting does, its unit, and its values.
	Usage string
	// Value holds the setting; it is bound to the field it sets.
	Value Value
	// Field is the Go field of the role's Config that Value sets ("Retries",
	// "CacheTier.TTL"), so that the role's FieldErrors name this flag.
	// Empty for a setting the node itself reads.
	Field string
	// Default, when set, is the default shown in help and docs in place of
	// the Value's text, for defaults that depend on the machine
	// ("GOMAXPROCS on Linux, else 0") or on other settings.
	Default string
	// Deprecated are the setting's former names, still accepted (flags and
	// environment variables) with a warning naming the new one.
	Deprecated []string
}

// Group is a section of the help and the docs: a role, the node's own
// settings, or the levers.
type Group struct {
	// Role is the Setting.Role of its settings; LeversGroup for the levers.
	Role string
	// Title heads the section.
	Title string
	// Doc, optional, is a paragraph under the title in the docs.
	Doc string
}

// LeversGroup is the Role of the group that lists the levers.
const LeversGroup = "levers"

// Table holds the settings of a command in the order they are listed. It
// is built per command line (its values point into one Config) and is not
// safe for concurrent use.
type Table struct {
	prefix  string
	groups  []Group
	list    []*entry
	byName  map[string]*entry
	warn    io.Writer
	failure error // the last value a flag refused during Parse
}

type entry struct {
	Setting
	def    string // the default, as shown
	given  bool   // set on the command line, under either name
	warned map[string]bool
}

// New returns an empty table whose environment variables start with
// prefix ("NODE"), listing settings in the order of groups.
func New(prefix string, groups ...Group) *Table {
	return &Table{prefix: prefix, groups: groups, byName: map[string]*entry{}}
}

// SetWarnings sets where the one-line warnings about deprecated names go
// (stderr, in `node run`); nil discards them.
func (t *Table) SetWarnings(w io.Writer) { t.warn = w }

// Add appends settings. A name used twice, a setting of no known group or
// without a value is a mistake in the program, and panics.
func (t *Table) Add(ss ...Setting) {
	for _, s := range ss {
		if s.Value == nil {
			panic("settings: --" + s.Name + " has no Value")
		}
		if t.group(s) == nil {
			panic(fmt.Sprintf("settings: --%s: no group for role %q", s.Name, s.Role))
		}
		e := &entry{Setting: s, def: s.Default, warned: map[string]bool{}}
		if e.def == "" {
			e.def = s.Value.String()
		}
		for _, n := range append([]string{s.Name}, s.Deprecated...) {
			if _, dup := t.byName[n]; dup {
				panic("settings: --" + n + " declared twice")
			}
			t.byName[n] = e
		}
		t.list = append(t.list, e)
	}
}

func (t *Table) group(s Setting) *Group {
	role := s.Role
	if s.Lever {
		role = LeversGroup
	}
	for i := range t.groups {
		if t.groups[i].Role == role {
			return &t.groups[i]
		}
	}
	return nil
}

// Settings returns the settings in the order they were added.
func (t *Table) Settings() []Setting {
	out := make([]Setting, len(t.list))
	for i, e := range t.list {
		out[i] = e.Setting
	}
	return out
}

// Lookup finds a setting by its name or a former one.
func (t *Table) Lookup(name string) (Setting, bool) {
	e, ok := t.byName[name]
	if !ok {
		return Setting{}, false
	}
	return e.Setting, true
}

// Default returns a setting's default as help and docs show it.
func (t *Table) Default(name string) string {
	if e, ok := t.byName[name]; ok {
		return e.def
	}
	return ""
}

// Env returns the environment variable of a flag: the prefix, '_', and the
// name in upper case with '-' as '_' (NODE_LB_RETRIES).
func (t *Table) Env(name string) string {
	return EnvName(t.prefix, name)
}

// EnvName is Table.Env for a given prefix.
func EnvName(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Register defines every setting on fs, and each former name as a flag
// that sets the same value with a warning. The usage of a flag on fs is
// its Usage; Table.Usage prints the grouped help.
func (t *Table) Register(fs *flag.FlagSet) {
	for _, e := range t.list {
		fs.Var(&flagValue{t: t, e: e, name: e.Name}, e.Name, e.Usage)
		for _, old := range e.Deprecated {
			fs.Var(&flagValue{t: t, e: e, name: old}, old, "deprecated: use --"+e.Name)
		}
	}
}

// flagValue is a setting's Value on a FlagSet under one of its names.
type flagValue struct {
	t    *Table
	e    *entry
	name string
}

func (v *flagValue) String() string {
	if v == nil || v.e == nil {
		return ""
	}
	return v.e.Value.String()
}

func (v *flagValue) Set(s string) error {
	if v.name != v.e.Name {
		v.t.warnf(v.e, "--"+v.name, "warning: --%s is deprecated: use --%s\n", v.name, v.e.Name)
	}
	if err := v.e.Value.Set(s); err != nil {
		v.t.failure = &FlagError{Flag: v.name, Env: v.t.Env(v.name), Problem: err.Error(), Err: err}
		return err
	}
	v.e.given = true
	return nil
}

func (v *flagValue) IsBoolFlag() bool {
	b, ok := v.e.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func (t *Table) warnf(e *entry, key, format string, args ...any) {
	if t.warn == nil || e.warned[key] {
		return
	}
	e.warned[key] = true
	fmt.Fprintf(t.warn, format, args...)
}

// Parse parses args on fs (where Register defined the settings). A value a
// setting refuses comes back as a *FlagError naming the flag and its
// environment variable; other errors are the flag package's.
func (t *Table) Parse(fs *flag.FlagSet, args []string) error {
	t.failure = nil
	err := fs.Parse(args)
	if err != nil && t.failure != nil {
		return t.failure
	}
	return err
}

// ApplyEnv sets every setting not given on the command line from its
// environment variable, read with lookup (os.LookupEnv), so that the same
// binary configures cleanly under systemd or in a container; the command
// line wins. A setting may also be read from the file that NAME_FILE
// names (the convention of container secrets:
// NODE_CACHE_PASSWORD_FILE=/run/secrets/cache), read with readFile, so
// that no secret has to be on a command line or in the environment; a
// setting that has a -file setting of its own (--cluster-key-file) is
// left to it. The variables of former names are read too, after the new
// ones, with a warning.
func (t *Table) ApplyEnv(lookup func(string) (string, bool), readFile func(path string) (string, error)) error {
	for _, e := range t.list {
		if e.given {
			continue
		}
		for _, name := range append([]string{e.Name}, e.Deprecated...) {
			env := t.Env(name)
			v, ok := lookup(env)
			from := env
			if !ok {
				path, fok := lookup(env + "_FILE")
				if !fok || t.byName[e.Name+"-file"] != nil || readFile == nil {
					continue
				}
				from = env + "_FILE"
				var err error
				if v, err = readFile(path); err != nil {
					return &FlagError{Flag: name, Env: from, Problem: err.Error(), Err: err}
				}
			}
			if name != e.Name {
				t.warnf(e, from, "warning: %s is deprecated: use %s (--%s)\n", from, strings.Replace(from, t.Env(name), t.Env(e.Name), 1), e.Name)
			}
			if err := e.Value.Set(v); err != nil {
				return &FlagError{Flag: name, Env: from, Problem: err.Error(), Err: err}
			}
			break
		}
	}
	return nil
}

// Explain turns a FieldError of role into the flag that sets the field:
// "--lb-retries (NODE_LB_RETRIES): -1 is negative", with every other field
// of the role the problem names written as its flag. Any other error, or a
// field no setting sets, is returned as it is.
func (t *Table) Explain(role string, err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	e := t.field(role, fe.Field)
	if e == nil {
		return err
	}
	problem := goField.ReplaceAllStringFunc(fe.Problem, func(w string) string {
		if o := t.field(role, w); o != nil {
			return "--" + o.Name
		}
		return w
	})
	return &FlagError{Flag: e.Name, Env: t.Env(e.Name), Problem: problem, Err: err}
}

// goField matches what may be a Go field (path) in a problem's text.
var goField = regexp.MustCompile(`\b[A-Z][A-Za-z0-9]*(\.[A-Z][A-Za-z0-9]*)*\b`)

func (t *Table) field(role, field string) *entry {
	for _, e := range t.list {
		if e.Role == role && e.Field == field && field != "" {
			return e
		}
	}
	return nil
}

// inGroup returns the settings listed under g.
func (t *Table) inGroup(g Group) []*entry {
	var out []*entry
	for _, e := range t.list {
		if gg := t.group(e.Setting); gg != nil && gg.Role == g.Role {
			out = append(out, e)
		}
	}
	return out
}

// Usage prints the settings grouped as the table's groups are, each with
// its environment variable, usage, default and former names.
func (t *Table) Usage(w io.Writer) {
	for _, g := range t.groups {
		es := t.inGroup(g)
		if len(es) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", g.Title)
		for _, e := range es {
			fmt.Fprintf(w, "  --%s  [%s]\n      %s%s%s\n", e.Name, t.Env(e.Name), e.Usage, defaultNote(e.def), formerNote(e.Deprecated, "--"))
		}
	}
}

func defaultNote(def string) string {
	if def == "" {
		return ""
	}
	return " (default " + def + ")"
}

func formerNote(old []string, dash string) string {
	if len(old) == 0 {
		return ""
	}
	names := make([]string, len(old))
	for i, o := range old {
		names[i] = dash + o
	}
	return " (formerly " + strings.Join(names, ", ") + ")"
}

// Markdown writes the table as a Markdown page: a section per group, a
// row per setting with its environment variable, default and usage.
// header comes first (a title and how the page is generated).
func (t *Table) Markdown(w io.Writer, header string) {
	fmt.Fprint(w, header)
	for _, g := range t.groups {
		es := t.inGroup(g)
		if len(es) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n## %s\n\n", g.Title)
		if g.Doc != "" {
			fmt.Fprintf(w, "%s\n\n", g.Doc)
		}
		fmt.Fprintln(w, "| Flag | Environment | Default | What it sets |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, e := range es {
			def := ""
			if e.def != "" {
				def = "`" + e.def + "`"
			}
			usage := strings.ReplaceAll(e.Usage, "|", `\|`)
			if len(e.Deprecated) > 0 {
				old := slices.Clone(e.Deprecated)
				for i := range old {
					old[i] = "`--" + old[i] + "`"
				}
				usage += " Formerly " + strings.Join(old, ", ") + "."
			}
			fmt.Fprintf(w, "| `--%s` | `%s` | %s | %s |\n", e.Name, t.Env(e.Name), def, usage)
		}
	}
}

// Of returns the constructor of role's settings, so that a role's
// Settings method lists each as s("lb-retries", "Retries", usage, value).
func Of(role string) func(name, field, usage string, v Value) Setting {
	return func(name, field, usage string, v Value) Setting {
		return Setting{Name: name, Role: role, Field: field, Usage: usage, Value: v}
	}
}

// Formerly returns s with its former names, which keep working with a
// warning.
func (s Setting) Formerly(old ...string) Setting {
	s.Deprecated = append(slices.Clone(s.Deprecated), old...)
	return s
}

// AsLever returns s marked as a stage lever.
func (s Setting) AsLever() Setting {
	s.Lever = true
	return s
}

// ShowDefault returns s with def shown as its default.
func (s Setting) ShowDefault(def string) Setting {
	s.Default = def
	return s
}

// Register defines ss on fs through a table of their own, one group per
// role, and returns the table: for a program that runs one role alone
// (bench/lb's lbserver) and for a role's tests.
func Register(fs *flag.FlagSet, ss []Setting) *Table {
	groups := []Group{{Role: LeversGroup, Title: "Levers"}}
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s.Role] {
			seen[s.Role] = true
			groups = append(groups, Group{Role: s.Role, Title: s.Role})
		}
	}
	t := New("NODE", groups...)
	t.Add(ss...)
	t.Register(fs)
	return t
}
