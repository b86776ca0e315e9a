package pki

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

type pair struct{ cert, key []byte }

func issueServer(t *testing.T, ca *CA, name string) pair {
	t.Helper()
	c, k, err := ca.IssueServer(name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pair{c, k}
}

func issueClient(t *testing.T, ca *CA, cn string, groups ...string) pair {
	t.Helper()
	c, k, err := ca.IssueClient(cn, groups)
	if err != nil {
		t.Fatal(err)
	}
	return pair{c, k}
}

func TestServerTLSConfig(t *testing.T) {
	ca := newTestCA(t)
	p := issueServer(t, ca, "m1")
	cfg, err := ServerTLSConfig(ca.Pool(), p.cert, p.key)
	if err != nil {
		t.Fatalf("ServerTLSConfig: %v", err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("MinVersion = %x", cfg.MinVersion)
	}
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.ClientCAs == nil {
		t.Fatalf("ClientAuth = %v, ClientCAs nil: %v", cfg.ClientAuth, cfg.ClientCAs == nil)
	}
	if !slices.Equal(cfg.NextProtos, []string{"h2", "http/1.1"}) {
		t.Fatalf("NextProtos = %q", cfg.NextProtos)
	}
	if _, err := ServerTLSConfig(ca.Pool(), p.cert, []byte("bad")); err == nil {
		t.Fatal("bad key accepted")
	}
	if _, err := ServerTLSConfig(nil, p.cert, p.key); err == nil {
		t.Fatal("nil pool accepted")
	}
}

// TestServerTLSConfigClientCerts checks the API server's handshake: a client
// certificate is optional, verified when given.
func TestServerTLSConfigClientCerts(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	p := issueServer(t, ca, "m1")
	cfg, err := ServerTLSConfig(ca.Pool(), p.cert, p.key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.VerifiedChains) == 0 {
			_, _ = io.WriteString(w, "anonymous "+r.Proto)
			return
		}
		_, _ = io.WriteString(w, r.TLS.VerifiedChains[0][0].Subject.CommonName+" "+r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)

	get := func(t *testing.T, client pair, pool *CA) (string, error) {
		t.Helper()
		ccfg, err := ClientTLSConfig(pool.Pool(), client.cert, client.key, "")
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: ccfg, ForceAttemptHTTP2: true}
		t.Cleanup(tr.CloseIdleConnections)
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get(t, issueClient(t, ca, "alice"), ca); err != nil || got != "alice HTTP/2.0" {
		t.Fatalf("with client cert: %q, %v; want alice over HTTP/2", got, err)
	}
	if got, err := get(t, pair{}, ca); err != nil || got != "anonymous HTTP/2.0" {
		t.Fatalf("without client cert: %q, %v; want anonymous", got, err)
	}
	if got, err := get(t, issueClient(t, other, "mallory"), ca); err == nil {
		t.Fatalf("client cert of another CA accepted: %q", got)
	}
	if got, err := get(t, issueClient(t, ca, "alice"), other); err == nil {
		t.Fatalf("client trusted a server of another CA: %q", got)
	}
}

// handshake runs one TLS handshake between a listener configured with srvCfg
// and a client configured with cliCfg, and returns both sides' errors.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	result := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			result <- err
			return
		}
		conn := tls.Server(raw, srvCfg)
		defer conn.Close()
		result <- conn.HandshakeContext(ctx)
	}()
	d := &tls.Dialer{Config: cliCfg}
	conn, clientErr := d.DialContext(ctx, "tcp", ln.Addr().String())
	// Wait for the server before closing, so that closing with unread
	// session tickets cannot reset the connection under the server.
	serverErr = <-result
	if conn != nil {
		conn.Close()
	}
	return serverErr, clientErr
}

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	m1 := issueServer(t, ca, "m1")
	m2 := issueServer(t, ca, "m2")
	srvCfg, err := MutualTLSConfig(ca.Pool(), m1.cert, m1.key)
	if err != nil {
		t.Fatalf("MutualTLSConfig: %v", err)
	}
	if srvCfg.ClientAuth != tls.RequireAndVerifyClientCert || srvCfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("ClientAuth = %v, MinVersion = %x", srvCfg.ClientAuth, srvCfg.MinVersion)
	}
	client := func(p pair, pool *CA, serverName string) *tls.Config {
		cfg, err := ClientTLSConfig(pool.Pool(), p.cert, p.key, serverName)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("peer master", func(t *testing.T) {
		cfg := client(m2, ca, "localhost")
		if len(cfg.Certificates) != 1 || cfg.RootCAs == nil {
			t.Fatal("client config lacks certificate or roots")
		}
		serr, cerr := handshake(t, srvCfg, cfg)
		if serr != nil || cerr != nil {
			t.Fatalf("server err %v, client err %v", serr, cerr)
		}
	})
	refused := map[string]*tls.Config{
		"no client certificate":           client(pair{}, ca, ""),
		"user certificate of the same CA": client(issueClient(t, ca, "admin", "system:masters"), ca, ""),
		"master of another CA":            client(issueServer(t, other, "m9"), ca, ""),
	}
	for name, cfg := range refused {
		t.Run(name, func(t *testing.T) {
			serr, _ := handshake(t, srvCfg, cfg)
			t.Logf("server: %v", serr)
			if serr == nil {
				t.Fatal("server accepted the peer")
			}
		})
	}
	t.Run("client distrusts server of another CA", func(t *testing.T) {
		if _, cerr := handshake(t, srvCfg, client(m2, other, "")); cerr == nil {
			t.Fatal("client accepted the server")
		}
	})
	t.Run("client refuses a server that is not a master", func(t *testing.T) {
		// A node's serving certificate, of the same CA and for the
		// name dialled, must not pass for a master.
		node, err := ca.IssueNodeCredentials("n1", []string{"127.0.0.1", "localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		nodeSrv, err := ServerTLSConfig(ca.Pool(), []byte(node.ServingCert), []byte(node.ServingKey))
		if err != nil {
			t.Fatal(err)
		}
		_, cerr := handshake(t, nodeSrv, client(m2, ca, ""))
		if cerr == nil || !strings.Contains(cerr.Error(), "not a skiff server") {
			t.Fatalf("client with a node's certificate as server: %v, want refused as not a skiff server", cerr)
		}
	})
	t.Run("client checks server name", func(t *testing.T) {
		if _, cerr := handshake(t, srvCfg, client(m2, ca, "m1.example.com")); cerr == nil {
			t.Fatal("client accepted a server certificate without the name")
		}
	})
}

func TestClientTLSConfigRejectsBadPair(t *testing.T) {
	ca := newTestCA(t)
	p := issueClient(t, ca, "a")
	if _, err := ClientTLSConfig(ca.Pool(), p.cert, nil, ""); err == nil {
		t.Fatal("certificate without key accepted")
	}
	if _, err := MutualTLSConfig(nil, p.cert, p.key); err == nil {
		t.Fatal("nil pool accepted")
	}
}
