package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/scalestack/scalestack/pkg/node"
	"github.com/scalestack/scalestack/pkg/settings"
)

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints usage with the command's examples.
func newFlagSet(name, usage, examples string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s %s\n\n", progName(), usage)
		fmt.Fprintln(stderr, "Flags (each also read from the environment variable shown, or from the file its _FILE variant names):")
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "[]" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(stderr, "  --%s  [%s]\n      %s%s\n", f.Name, envName(f.Name), f.Usage, def)
		})
		if examples != "" {
			fmt.Fprintf(stderr, "\nExamples:\n%s", named(examples))
		}
	}
	return fs
}

// envName is the environment variable of a flag: NODE_ and the flag's name
// in upper case with '-' as '_'.
func envName(flagName string) string {
	return settings.EnvName(node.EnvPrefix, flagName)
}

// envHelp says how a flag is read from the environment.
const envHelp = "Each flag is also read from the environment variable shown (NODE_<FLAG>), or from the file its _FILE variant names; the command line wins."

// parseSettings parses the settings of t from args and then from the
// environment (Table.ApplyEnv). -h prints t's help, grouped by role, with
// the command's usage line and examples. A bad value is a usage error that
// names the flag and its environment variable.
func parseSettings(name, usage, examples string, t *settings.Table, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package prints the whole usage on any error; a mistake gets
	// one line instead, and the help is printed only when asked for (-h).
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	t.Register(fs)
	err := t.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "Usage: %s %s\n\n%s\n", progName(), usage, envHelp)
		t.Usage(stderr)
		if examples != "" {
			fmt.Fprintf(stderr, "\nExamples:\n%s", named(examples))
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %v (see %s %s -h)", errUsage, err, progName(), name)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see %s %s -h)", errUsage, fs.Arg(0), progName(), name)
	}
	if err := t.ApplyEnv(os.LookupEnv, node.ReadSecretFile); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// parseFlags parses args, then fills every flag not given on the command
// line from its environment variable, so the same binary configures cleanly
// under systemd or in a container. The command line wins.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseQuietly(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see %s %s -h)", errUsage, fs.Arg(0), progName(), fs.Name())
	}
	return fillFromEnv(fs)
}

// parseWithArgs is parseFlags for a command whose positional arguments
// may come among its flags ("retry ID --all", "--limit 5 dead"): it
// returns them in order.
func parseWithArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseQuietly(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, fillFromEnv(fs)
}

// parseQuietly parses args into fs. The flag package prints the whole
// usage on any error; a mistake gets one line instead, and the usage is
// printed only when asked for (-h), which returns flag.ErrHelp as it is.
func parseQuietly(fs *flag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {}
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	if err == flag.ErrHelp {
		usage()
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %v (see %s %s -h)", errUsage, err, progName(), fs.Name())
	}
	return nil
}

// fillFromEnv sets every flag of fs not given on the command line from its
// environment variable (envName), for commands that parse fs themselves.
// A flag may also be read from the file that NAME_FILE names (the
// convention of container secrets: NODE_CACHE_PASSWORD_FILE=/run/secrets/
// cache), so that no secret has to be on a command line, where every user
// of the machine can read it, or in the environment; a flag that has its
// own -file flag (--cluster-key-file) is left to it.
func fillFromEnv(fs *flag.FlagSet) error {
	var err error
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%w: %s=%q: %v", errUsage, env, v, e)
			}
			return
		}
		path, ok := os.LookupEnv(env + "_FILE")
		if !ok || fs.Lookup(f.Name+"-file") != nil {
			return
		}
		v, e := node.ReadSecretFile(path)
		if e == nil {
			e = fs.Set(f.Name, v)
		}
		if e != nil {
			err = fmt.Errorf("%w: %s_FILE=%q: %v", errUsage, env, path, e)
		}
	})
	return err
}
