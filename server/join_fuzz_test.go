package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/server/pki"
)

// Fuzz targets for the join handshake (issue 15): the request a master
// decodes from a joining master, and the bootstrap response a joiner
// decodes from the master it joins. Seeds are in testdata/fuzz.

// FuzzJoinRequest: any join request body is refused with errBadJoinRequest
// or names a master by a name, a host:port Raft address and an https API
// URL; what a follower forwards to the leader (mustJSON) decodes to the
// same member there.
func FuzzJoinRequest(f *testing.F) {
	for _, s := range []string{
		`{"name":"m2","raftAddress":"127.0.0.2:6444","apiURL":"https://127.0.0.2:6443","gossipAddr":"127.0.0.2:7946"}`,
		`{"name":"m2","raftAddress":"[::1]:6444","apiURL":"https://[::1]:6443"}`,
		`{"name":"m2","raftAddress":"127.0.0.2","apiURL":"https://127.0.0.2:6443"}`,
		`{"name":"","raftAddress":"a:1","apiURL":"https://a"}`,
		`{"name":"m2","raftAddress":"a:1","apiURL":"http://a"}`,
		`{"name":"m2\n","raftAddress":"a:1","apiURL":"https://a"} trailing`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeJoinRequest(bytes.NewReader(body))
		if err != nil {
			if !errors.Is(err, errBadJoinRequest) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		host, port, err := net.SplitHostPort(m.RaftAddress)
		if m.Name == "" || err != nil || !validPort(port) || !strings.HasPrefix(m.APIURL, "https://") {
			t.Fatalf("accepted %+v (host %q, port %q)", m, host, port)
		}
		again, err := decodeJoinRequest(bytes.NewReader(mustJSON(m)))
		if err != nil || again != m {
			t.Fatalf("forwarded %+v decodes to %+v, %v", m, again, err)
		}
	})
}

// FuzzBootstrapResponse: any bootstrap response is refused with
// errBadBootstrap or holds a CA whose PEM has the token's hash and whose
// key matches it, that cluster's server token, and usable service-account
// and encryption keys: a joiner writes nothing it cannot use. The pinned
// hash is the one of the CA the response names (or, when pinOther, of
// another CA), so that mutations reach the checks after the pin.
func FuzzBootstrapResponse(f *testing.F) {
	ca, err := pki.GenerateCA("skiff-ca-fuzz")
	if err != nil {
		f.Fatal(err)
	}
	sa, err := pki.GenerateServiceAccountKey()
	if err != nil {
		f.Fatal(err)
	}
	good := bootstrapResponse{CACert: string(ca.CertPEM), CAKey: string(ca.KeyPEM), Token: pki.FormatToken(ca.CertPEM, "s3cret"),
		ServiceAccountKey: string(sa), EncryptionKey: bytes.Repeat([]byte{7}, fsm.RootKeySize)}
	f.Add(mustJSON(good), false)
	f.Add(mustJSON(good), true)
	old := good
	old.ServiceAccountKey, old.EncryptionKey = "", nil
	f.Add(mustJSON(old), false)
	f.Fuzz(func(t *testing.T, body []byte, pinOther bool) {
		var named bootstrapResponse
		_ = json.Unmarshal(body, &named)
		pin := pki.CAHash([]byte(named.CACert))
		if pinOther {
			pin = pki.CAHash(ca.CertPEM[1:])
		}
		br, err := decodeBootstrapResponse(body, pin)
		if err != nil {
			if !errors.Is(err, errBadBootstrap) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if pki.CAHash([]byte(br.CACert)) != pin {
			t.Fatalf("accepted a CA the token does not pin")
		}
		if _, err := pki.LoadCA([]byte(br.CACert), []byte(br.CAKey)); err != nil {
			t.Fatalf("accepted an unusable CA: %v", err)
		}
		if hash, secret, err := pki.ParseToken(br.Token); err != nil || (hash != "" && hash != pin) || pki.IsAgentSecret(secret) {
			t.Fatalf("accepted token %q: %q, %v", br.Token, hash, err)
		}
		if len(br.EncryptionKey) != 0 && len(br.EncryptionKey) != fsm.RootKeySize {
			t.Fatalf("accepted a %d-byte encryption key", len(br.EncryptionKey))
		}
		again, err := decodeBootstrapResponse(mustJSON(br), pin)
		if err != nil || again.CACert != br.CACert || again.CAKey != br.CAKey || again.Token != br.Token ||
			again.ServiceAccountKey != br.ServiceAccountKey || !bytes.Equal(again.EncryptionKey, br.EncryptionKey) {
			t.Fatalf("re-encoded response decodes to %+v, %v", again, err)
		}
	})
}
