package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles names the PEM files that give a node a TLS identity for its
// internal traffic (--tls-cert, --tls-key, --tls-ca): the store port
// (API, replication, lease messages), the cache port and NATS. All three
// or none: without them internal traffic is plain TCP, authenticated by the
// secrets derived from the cluster key but readable on the wire.
type TLSFiles struct {
	// Cert is the node's certificate (chain), PEM. Its subject alternative
	// names must hold the address other nodes dial: an IP SAN with --addr.
	// It serves both as a server and as a client certificate (NATS routes
	// ask for one), so its extended key usage must allow both.
	Cert string
	// Key is the private key of Cert, PEM.
	Key string
	// CA is the certificate authority (one or more certificates, PEM) that
	// signed every node's certificate: the nodes' clients accept a server
	// only if its certificate chains to it.
	CA string
}

// IsZero reports whether no file is named: TLS is off.
func (f TLSFiles) IsZero() bool { return f.Cert == "" && f.Key == "" && f.CA == "" }

// ErrTLSFiles marks a TLS configuration that is incomplete or unreadable.
var ErrTLSFiles = errors.New("bad TLS files")

// TLS is a node's TLS configuration for internal traffic, made from its
// TLSFiles by LoadTLS. Each field is shared: clone it before changing it.
type TLS struct {
	// Server is for the node's internal listeners: it presents the node's
	// certificate. A client certificate is not required (the derived
	// secrets authenticate clients, so that curl and redis-cli need only
	// the CA), but one that is offered must chain to the CA.
	Server *tls.Config
	// Client is for the node's own clients of internal listeners: servers
	// are verified against the CA and must name the dialled address; the
	// node's certificate is offered to servers that ask for one.
	Client *tls.Config
	// Mutual is for links where both ends are nodes and either may dial
	// (NATS routes): the node's certificate, the CA as roots and client
	// CAs, and a client certificate required.
	Mutual *tls.Config
}

// LoadTLS reads the files of f. Zero files give a nil TLS (plain TCP); a
// partial set, or a file that cannot be read or parsed, is an error
// wrapping ErrTLSFiles that names the file.
func LoadTLS(f TLSFiles) (*TLS, error) {
	if f.IsZero() {
		return nil, nil
	}
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, fmt.Errorf("load tls: --tls-cert, --tls-key and --tls-ca go together (cert %q, key %q, ca %q): %w", f.Cert, f.Key, f.CA, ErrTLSFiles)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load tls: certificate %s with key %s: %v: %w", f.Cert, f.Key, err, ErrTLSFiles)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("load tls: CA: %v: %w", err, ErrTLSFiles)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("load tls: CA %s holds no PEM certificate: %w", f.CA, ErrTLSFiles)
	}
	return NewTLS(cert, pool), nil
}

// NewTLS builds the configurations of a node whose certificate is cert and
// whose CA certificates are in pool (tests make both in memory).
func NewTLS(cert tls.Certificate, pool *x509.CertPool) *TLS {
	certs := []tls.Certificate{cert}
	return &TLS{
		Server: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: certs,
			ClientCAs:    pool,
			ClientAuth:   tls.VerifyClientCertIfGiven,
		},
		Client: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: certs,
			RootCAs:      pool,
		},
		Mutual: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: certs,
			RootCAs:      pool,
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
		},
	}
}
