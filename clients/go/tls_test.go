package ratequeue_test

// TLS against a real server with certificates made by openssl: a client
// trusting the right CA file connects; one trusting another CA, the system
// roots or speaking plaintext is refused.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratequeue "github.com/ratequeue/ratequeue/clients/go"
	"github.com/ratequeue/ratequeue/clients/go/internal/testserver"
)

// makeCerts makes, in dir, a CA (ca.pem), a server certificate for
// 127.0.0.1 and localhost signed by it (server.pem, server.key), and a
// stranger CA (other-ca.pem).
func makeCerts(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not on PATH: the TLS tests make their certificates with it")
	}
	openssl := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	for _, ca := range []string{"ca", "other-ca"} {
		openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ratequeue go test "+ca, "-keyout", ca+".key", "-out", ca+".pem")
	}
	if err := os.WriteFile(filepath.Join(dir, "server.ext"), []byte("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=ratequeue go test server", "-keyout", "server.key", "-out", "server.csr")
	openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem")
}

func TestTLS(t *testing.T) {
	// Not parallel: it sets RATEQUEUE_CA_FILE.
	dir := t.TempDir()
	makeCerts(t, dir)
	f := func(name string) string { return filepath.Join(dir, name) }
	own, err := testserver.StartWith(testserver.Options{
		Config: "resources:\n  r:\n    concurrency: 1\n",
		Args:   []string{"--tls-cert", f("server.pem"), "--tls-key", f("server.key")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Stop() })
	_, port, _ := net.SplitHostPort(own.Addr)
	use := func(t *testing.T, c *ratequeue.Client) {
		t.Helper()
		l := acquire(t, c, "r")
		if err := l.Release(context.Background()); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}

	t.Run("the right CA file connects", func(t *testing.T) {
		t.Setenv("RATEQUEUE_CA_FILE", "")
		for _, addr := range []string{"https://127.0.0.1:" + port, "https://localhost:" + port} {
			use(t, dial(t, addr, ratequeue.WithCAFile(f("ca.pem"))))
		}
	})
	t.Run("the CA file from RATEQUEUE_CA_FILE", func(t *testing.T) {
		t.Setenv("RATEQUEUE_CA_FILE", f("ca.pem"))
		use(t, dial(t, "https://127.0.0.1:"+port))
		// WithCAFile("") trusts the system roots again.
		isErr(t, dialErr(t, "https://127.0.0.1:"+port, ratequeue.WithCAFile("")), ratequeue.ErrUnavailable)
	})
	t.Run("WithCAFile sets the RootCAs of WithTLSConfig", func(t *testing.T) {
		t.Setenv("RATEQUEUE_CA_FILE", "")
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		use(t, dial(t, "https://127.0.0.1:"+port, ratequeue.WithTLSConfig(cfg), ratequeue.WithCAFile(f("ca.pem"))))
		if cfg.RootCAs != nil {
			t.Error("WithCAFile changed the caller's tls.Config")
		}
		// WithTLSConfig alone, with the CA in RootCAs, works as before.
		pem, err := os.ReadFile(f("ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		use(t, dial(t, "https://127.0.0.1:"+port, ratequeue.WithTLSConfig(&tls.Config{RootCAs: pool})))
	})
	t.Run("without the CA: refused", func(t *testing.T) {
		t.Setenv("RATEQUEUE_CA_FILE", "")
		start := time.Now()
		for _, opts := range [][]ratequeue.Option{
			nil, // the system roots
			{ratequeue.WithCAFile(f("other-ca.pem"))},
		} {
			err := dialErr(t, "https://127.0.0.1:"+port, opts...)
			isErr(t, err, ratequeue.ErrUnavailable)
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("refused for another reason than the certificate: %v", err)
			}
		}
		// Plaintext to the TLS port.
		isErr(t, dialErr(t, "http://127.0.0.1:"+port), ratequeue.ErrUnavailable)
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("refusals took %v", d)
		}
	})
	t.Run("a bad CA file fails Dial", func(t *testing.T) {
		t.Setenv("RATEQUEUE_CA_FILE", "")
		if _, err := ratequeue.Dial(context.Background(), "https://127.0.0.1:"+port, ratequeue.WithCAFile(f("missing.pem"))); err == nil {
			t.Error("Dial with a missing CA file succeeded")
		}
		if _, err := ratequeue.Dial(context.Background(), "https://127.0.0.1:"+port, ratequeue.WithCAFile(f("server.ext"))); err == nil {
			t.Error("Dial with a CA file holding no certificate succeeded")
		}
	})
}
