// Package testcert makes throw-away TLS certificates for tests: a CA and
// node certificates signed by it, generated in memory when a test runs, so
// that no key is ever committed. Each certificate is valid for an hour,
// for the IP addresses it is given (and "localhost"), as a server and as a
// client, as docs/security.md asks of a node's certificate.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
)

// CA is a certificate authority made for one test.
type CA struct {
	tb   testing.TB
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA's certificate, PEM-encoded (what --tls-ca names).
	PEM []byte
}

// NewCA makes a CA.
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: "scalestack test CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("testcert: create CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testcert: parse CA: %v", err)
	}
	return &CA{tb: tb, cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool returns a pool holding the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Issue makes a node certificate for the IP addresses ips, signed by the
// CA, and returns its certificate and key, PEM-encoded.
func (ca *CA) Issue(ips ...string) (certPEM, keyPEM []byte) {
	ca.tb.Helper()
	key := newKey(ca.tb)
	tmpl := &x509.Certificate{
		SerialNumber: serial(ca.tb),
		Subject:      pkix.Name{CommonName: "scalestack test node"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			ca.tb.Fatalf("testcert: %q is not an IP address", s)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.tb.Fatalf("testcert: issue: %v", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		ca.tb.Fatalf("testcert: marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TLS returns a node's TLS configurations for a certificate issued for ips.
func (ca *CA) TLS(ips ...string) *cluster.TLS {
	ca.tb.Helper()
	c, k := ca.Issue(ips...)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		ca.tb.Fatalf("testcert: key pair: %v", err)
	}
	return cluster.NewTLS(pair, ca.Pool())
}

// Files writes the CA and a certificate issued for ips into dir, and
// returns their paths as a node's --tls-* flags take them.
func (ca *CA) Files(dir string, ips ...string) cluster.TLSFiles {
	ca.tb.Helper()
	c, k := ca.Issue(ips...)
	f := cluster.TLSFiles{Cert: filepath.Join(dir, "node.pem"), Key: filepath.Join(dir, "node-key.pem"), CA: filepath.Join(dir, "ca.pem")}
	for path, b := range map[string][]byte{f.Cert: c, f.Key: k, f.CA: ca.PEM} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			ca.tb.Fatalf("testcert: %v", err)
		}
	}
	return f
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("testcert: key: %v", err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatalf("testcert: serial: %v", err)
	}
	return n
}
