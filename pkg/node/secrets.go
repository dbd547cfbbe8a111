package node

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/scalestack/scalestack/pkg/cluster"
)

// Secrets reach a node from the environment or a file, never only from the
// command line, which every user of the machine can read (ps,
// /proc/PID/cmdline) and which /debug/pprof/cmdline would serve; this file
// holds what the node and its commands share about them.

// adminLabel is the purpose the admin token is derived for from the cluster
// key (cluster.DeriveSecret); each purpose has its own label.
const adminLabel = "admin"

// AdminToken returns the bearer token of the admin endpoints of a cluster
// whose key is clusterKey (base64, as `keygen` prints it): every endpoint
// but /healthz and /readyz wants "Authorization: Bearer <token>". It is ""
// without a key: the admin port is then open, and only on loopback.
func AdminToken(clusterKey string) (string, error) {
	key, err := cluster.ParseKey(clusterKey)
	if err != nil {
		return "", err
	}
	return cluster.DeriveSecret(key, adminLabel), nil
}

// ClusterKey returns the cluster key given either as key or in the file at
// path (--cluster-key, --cluster-key-file); giving both is a mistake unless
// they agree. The file holds the key as `keygen` prints it; surrounding
// white space is ignored.
func ClusterKey(key, path string) (string, error) {
	if path == "" {
		return key, nil
	}
	fromFile, err := ReadSecretFile(path)
	if err != nil {
		return "", configErr("--cluster-key-file: %v", err)
	}
	if key != "" && key != fromFile {
		return "", configErr("--cluster-key and --cluster-key-file are both given and differ: keep the file (a key on the command line is visible to every user of the machine)")
	}
	return fromFile, nil
}

// ReadSecretFile reads a secret from a file, without the white space
// around it (the newline an editor or `echo` adds). An empty file is an
// error: a secret that silently became "" would turn authentication off.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// IsSecretFlag reports whether a flag's value is a secret: its name holds
// key, password, passwd, token or secret (--cluster-key, --cache-password,
// --edge-purge-token, and any such flag added later).
func IsSecretFlag(name string) bool {
	name = strings.ToLower(strings.TrimLeft(name, "-"))
	for _, w := range []string{"key", "password", "passwd", "token", "secret"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// Redacted replaces a secret's value where the command line is shown.
const Redacted = "REDACTED"

// RedactArgs returns a copy of a command line (os.Args: the program first)
// with the value of every secret flag replaced by Redacted, in both forms
// the flag package reads: --name=value and --name value.
func RedactArgs(args []string) []string {
	out := slices.Clone(args)
	for i := 1; i < len(out); i++ {
		a := out[i]
		if len(a) < 2 || a[0] != '-' || a == "--" {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !IsSecretFlag(name) {
			continue
		}
		if hasValue {
			out[i] = a[:strings.IndexByte(a, '=')+1] + Redacted
		} else if i+1 < len(out) {
			out[i+1] = Redacted
			i++
		}
	}
	return out
}

// SecretFlagsIn returns the names of the secret flags given with their
// value on a command line (args without the program), for a warning; a
// flag naming a file (--cluster-key-file) holds no secret itself.
func SecretFlagsIn(args []string) []string {
	var names []string
	for _, a := range args {
		if len(a) < 2 || a[0] != '-' || a == "--" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if IsSecretFlag(name) && !strings.HasSuffix(name, "-file") && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}
