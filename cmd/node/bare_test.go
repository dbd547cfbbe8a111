package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A command a reader types must not start with a bare `node`: on a machine
// with Node.js, that runs Node.js (issue 17). Docs write the stack's own
// binary (.scalestack/bin/node), `go run ./cmd/node`, or ./node after
// `go build -o node ./cmd/node`; the binary's help names it as it was
// called. The name of a command in prose (`node up`, `node ps`) is fine.
//
// The rules, each matching a command line and not a name:
//   - in a fenced code block of a Markdown file, a line whose command starts
//     with the word node: after the indentation, a "$ " prompt and NAME=value
//     assignments, or after "$(", "; ", "&& " or "| " (bareInCode);
//   - in an inline code span of a Markdown file, or a backquoted span in a
//     string of cmd/node or pkg/launch, a span of three words or more that
//     starts with node (`node kill db-1`, `node up --stage 3`), where two
//     words are the name of a command (bareSpan);
//   - in the output of `help` and of every command's -h, a line whose first
//     word is node followed by a command name, a flag, "<command>", a
//     comment or nothing (bareInHelp): "node is scalestack's single binary"
//     is prose.
func TestNoBareNodeCommand(t *testing.T) {
	root := "../.."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "data" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(path, ".md"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, p := range bareInMarkdown(string(b)) {
				t.Errorf("%s:%d: a bare node command: %s", rel, p.line, p.text)
			}
		case strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") &&
			(strings.HasPrefix(rel, "cmd/node/") || strings.HasPrefix(rel, "pkg/launch/")):
			for _, p := range bareInGoStrings(t, path) {
				t.Errorf("%s:%d: a bare node command in a string: %s", rel, p.line, p.text)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The help texts, as printed.
	helps := map[string][]string{"help": {"help"}}
	for _, c := range commands() {
		helps[c.name+" -h"] = []string{c.name, "-h"}
	}
	for name, args := range helps {
		var stdout, stderr bytes.Buffer
		dispatch(args, &stdout, &stderr)
		text := stdout.String() + stderr.String()
		if !strings.Contains(text, "Usage") {
			t.Errorf("%s printed no usage:\n%s", name, text)
		}
		for i, line := range strings.Split(text, "\n") {
			if bareInHelp(line) || slices.ContainsFunc(codeSpans(line), bareSpan) {
				t.Errorf("%s, line %d: a bare node command: %s", name, i+1, line)
			}
		}
	}
}

// The rules themselves, on the cases they must tell apart.
func TestBareNodeRules(t *testing.T) {
	md := "`node up` starts a stage, `node ps` lists it; run `node kill db-1`.\n" +
		"node is the program's name in prose.\n" +
		"```\n" +
		"go run ./cmd/node up --stage 2\n" +
		".scalestack/bin/node ps\n" +
		"node ps\n" +
		"$ node kill db-1\n" +
		"NODE_CLUSTER_KEY=x node run --roles app\n" +
		"curl -H \"Authorization: Bearer $(node secret store)\" host\n" +
		" | node-1   127.0.0.2 |\n" +
		" browser, node load\n" +
		"```\n" +
		"`./node run --roles app` after a build, `node up --stage 3` bare.\n"
	var got []int
	for _, p := range bareInMarkdown(md) {
		got = append(got, p.line)
	}
	if want := []int{1, 6, 7, 8, 9, 13}; !slices.Equal(got, want) {
		t.Errorf("bareInMarkdown flags lines %v, want %v", got, want)
	}
	for line, want := range map[string]bool{
		"node is scalestack's single binary":     false,
		"  node <command> [flags]     run":       true,
		"  node up --stage 2   # a stage":        true,
		"  node                # stage 1":        true,
		"  node":                                 true,
		"  go run ./cmd/node up":                 false,
		"  .scalestack/bin/node ps":              false,
		"Usage: node ps [--dir DIR]":             true,
		"Usage: go run ./cmd/node ps":            false,
		"  --dir  [NODE_DIR]":                    false,
		"      directory of the node's data":     false,
		"  node run --roles primary --name db-1": true,
	} {
		if got := bareInHelp(line); got != want {
			t.Errorf("bareInHelp(%q) = %v, want %v", line, got, want)
		}
	}
}

// A place where a bare command was found.
type bare struct {
	line int
	text string
}

var (
	// fence opens or closes a fenced code block.
	fence = regexp.MustCompile("^\\s*(```|~~~)")
	// codeCommand is a command starting with node in a code block.
	codeCommand = regexp.MustCompile(`(^\s*(\$ )?([A-Z_][A-Z0-9_]*=\S*\s+)*|\$\(|; |&& |\| )node( |$)`)
	// inlineCode is an inline code span of one line.
	inlineCode = regexp.MustCompile("`([^`\n]+)`")
	// helpCommand is node followed by what makes it a command line.
	helpCommand = regexp.MustCompile(`^\s*(Usage: )?node( +(-|<command>|#|[a-z]+( |$))| *$)`)
)

// bareInMarkdown returns the bare commands of a Markdown text.
func bareInMarkdown(text string) []bare {
	var found []bare
	inCode := false
	for i, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			inCode = !inCode
			continue
		}
		if inCode && codeCommand.MatchString(line) || !inCode && slices.ContainsFunc(codeSpans(line), bareSpan) {
			found = append(found, bare{i + 1, strings.TrimSpace(line)})
		}
	}
	return found
}

// codeSpans returns the text of each inline code span of a line.
func codeSpans(line string) []string {
	var spans []string
	for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
		spans = append(spans, m[1])
	}
	return spans
}

// bareSpan reports whether a code span is a command line that starts with
// node: three words or more (two are a command's name).
func bareSpan(span string) bool {
	f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(span), "$ "))
	return len(f) >= 3 && f[0] == "node"
}

// bareInHelp reports whether a line of a help text is a command line that
// starts with node.
func bareInHelp(line string) bool {
	m := helpCommand.FindStringSubmatch(line)
	if m == nil {
		return false
	}
	word := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "Usage: "))
	if len(word) < 2 || strings.HasPrefix(word[1], "-") || strings.HasPrefix(word[1], "<") || strings.HasPrefix(word[1], "#") {
		return true
	}
	return slices.ContainsFunc(commands(), func(c command) bool { return c.name == word[1] }) || word[1] == "help"
}

// bareInGoStrings returns the bare command spans in the interpreted
// string literals of a Go file (its raw strings are help texts, which
// named() rewrites and the help check reads as printed).
func bareInGoStrings(t *testing.T, path string) []bare {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var found []bare
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING || !strings.HasPrefix(lit.Value, `"`) {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err == nil && slices.ContainsFunc(codeSpans(s), bareSpan) {
			found = append(found, bare{fset.Position(lit.Pos()).Line, s})
		}
		return true
	})
	return found
}
