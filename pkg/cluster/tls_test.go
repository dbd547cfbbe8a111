package cluster_test

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/internal/testcert"
	"github.com/scalestack/scalestack/pkg/cluster"
)

func TestDeriveSecrets(t *testing.T) {
	key := mustKey(t)
	s := cluster.DeriveSecrets(key)
	got := map[string]string{
		cluster.PurposeStore: s.Store, cluster.PurposeCache: s.Cache, cluster.PurposeNATS: s.NATS,
		cluster.PurposePurge: s.Purge, cluster.PurposeAdmin: s.Admin, cluster.PurposeService: s.Service,
	}
	if len(got) != len(cluster.Purposes()) {
		t.Fatalf("Purposes() = %v, want the %d labels of Secrets", cluster.Purposes(), len(got))
	}
	seen := map[string]string{}
	for _, p := range cluster.Purposes() {
		if want := cluster.DeriveSecret(key, p); got[p] != want {
			t.Errorf("DeriveSecrets().%s = %q, want DeriveSecret(key, %q) = %q", p, got[p], p, want)
		}
		if other, ok := seen[got[p]]; ok {
			t.Errorf("purposes %q and %q share a secret", p, other)
		}
		seen[got[p]] = p
	}
	// The NATS password is what it was before the other labels existed,
	// so keyed clusters keep working across the upgrade.
	if s.NATS != cluster.DeriveSecret(key, "nats") {
		t.Errorf("NATS secret changed")
	}
	if z := cluster.DeriveSecrets(nil); z != (cluster.Secrets{}) {
		t.Errorf("DeriveSecrets(nil) = %+v, want every secret empty", z)
	}
}

func TestLoadTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	files := ca.Files(t.TempDir(), "127.0.0.1")
	if got, err := cluster.LoadTLS(cluster.TLSFiles{}); got != nil || err != nil {
		t.Fatalf("LoadTLS(none) = %v, %v; want nil, nil (plain TCP)", got, err)
	}
	for _, tt := range []struct {
		name  string
		files cluster.TLSFiles
		want  string
	}{
		{"no ca", cluster.TLSFiles{Cert: files.Cert, Key: files.Key}, "go together"},
		{"no key", cluster.TLSFiles{Cert: files.Cert, CA: files.CA}, "go together"},
		{"missing cert", cluster.TLSFiles{Cert: filepath.Join(t.TempDir(), "gone.pem"), Key: files.Key, CA: files.CA}, "gone.pem"},
		{"key of another cert", cluster.TLSFiles{Cert: files.Cert, Key: ca.Files(t.TempDir(), "127.0.0.1").Key, CA: files.CA}, "certificate"},
		{"ca not pem", cluster.TLSFiles{Cert: files.Cert, Key: files.Key, CA: writeFile(t, "not a certificate")}, "no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cluster.LoadTLS(tt.files)
			if !errors.Is(err, cluster.ErrTLSFiles) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadTLS = %v, want ErrTLSFiles mentioning %q", err, tt.want)
			}
		})
	}

	// Loaded configurations talk to each other, and not to another CA's.
	cfg, err := cluster.LoadTLS(files)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, cfg.Server, cfg.Client); err != nil {
		t.Errorf("handshake between the loaded server and client configs: %v", err)
	}
	if err := handshake(t, cfg.Mutual, cfg.Mutual); err != nil {
		t.Errorf("mutual handshake: %v", err)
	}
	stranger := testcert.NewCA(t).TLS("127.0.0.1")
	if err := handshake(t, cfg.Server, stranger.Client); err == nil {
		t.Errorf("a client of another CA accepted this node's certificate")
	}
	if err := handshake(t, cfg.Mutual, stranger.Mutual); err == nil {
		t.Errorf("a mutual link accepted a peer of another CA")
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.pem")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// handshake connects a TLS client with cc to a server with sc over
// loopback and returns the first error either side saw.
func handshake(t *testing.T, sc, cc *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", sc)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			_, err = io.WriteString(c, "ok")
		}
		srvErr <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), cc.Clone())
	if err == nil {
		buf := make([]byte, 2)
		_, err = io.ReadFull(c, buf)
		c.Close()
	}
	if serr := <-srvErr; err == nil {
		err = serr
	}
	return err
}
