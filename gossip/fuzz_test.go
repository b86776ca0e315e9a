package gossip

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"testing"
)

// Fuzz targets for what Skiff decodes of the gossip handshake (issue 15):
// the keyring file and the keyring a master hands a joining member
// (JoinInfo). serf's and memberlist's own wire formats are the libraries'
// (docs/security.md). Seeds are in testdata/fuzz.

// checkKeyring: keys, as accepted, are each in canonical base64 (the
// keyring a member installs holds exactly them: SetLocalKeys removes every
// key whose encoding it was not given) and make a keyring whose primary
// key is the first.
func checkKeyring(t *testing.T, keys []string) {
	t.Helper()
	for _, k := range keys {
		b, err := DecodeKey(k)
		if err != nil {
			t.Fatalf("accepted key %q: %v", k, err)
		}
		if enc := base64.StdEncoding.EncodeToString(b); enc != k {
			t.Fatalf("accepted key %q, which is %q: not the form a keyring holds", k, enc)
		}
	}
	if len(keys) == 0 {
		return
	}
	kr, err := newKeyring(keys)
	if err != nil {
		t.Fatalf("accepted keys %q make no keyring: %v", keys, err)
	}
	got := encodeKeys(kr.GetKeys())
	if got[0] != keys[0] {
		t.Fatalf("keyring of %q has primary %q", keys, got[0])
	}
	for _, k := range keys {
		if !slices.Contains(got, k) {
			t.Fatalf("keyring of %q lacks %q: %q", keys, k, got)
		}
	}
}

// FuzzParseKeyring: any keyring file is refused with ErrInvalidKeyring or
// holds valid keys that make a keyring (checkKeyring) and write back to
// the same list.
func FuzzParseKeyring(f *testing.F) {
	k1, k2 := base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, s := range []string{
		`["` + k1 + `","` + k2 + `"]`,
		`[]`,
		`null`,
		`["` + k1 + `","` + k1 + `"]`,
		`["AAAAAAAAAAAAAAAAAAAAAB=="]`,
		`["not base64"]`,
		`{"keys":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseKeyring(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeyring) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		checkKeyring(t, keys)
		out, err := json.Marshal(keys)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseKeyring(out)
		if err != nil || !slices.Equal(again, keys) && len(keys) > 0 {
			t.Fatalf("written %s reads as %q, %v; want %q", out, again, err, keys)
		}
	})
}

// FuzzParseJoinInfo: any answer of /internal/v1/gossip is refused with
// ErrInvalidKeyring or holds at least one key, a keyring (checkKeyring)
// and host:port server addresses.
func FuzzParseJoinInfo(f *testing.F) {
	k1 := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, s := range []string{
		`{"keys":["` + k1 + `"],"servers":["127.0.0.1:7946","[::1]:7946"]}`,
		`{"keys":[],"servers":["127.0.0.1:7946"]}`,
		`{"keys":["` + k1 + `"],"servers":["127.0.0.1"]}`,
		`{"keys":["` + k1[:len(k1)-2] + `"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseJoinInfo(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidKeyring) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(info.Keys) == 0 {
			t.Fatalf("accepted %s without a key", b)
		}
		checkKeyring(t, info.Keys)
		for _, a := range info.Servers {
			if _, _, err := net.SplitHostPort(a); err != nil {
				t.Fatalf("accepted server address %q", a)
			}
		}
	})
}

// FuzzMemberTags: any API and Raft address tags a member gossips (any
// member holding the key sets its own) are refused with ErrInvalidTags
// or are what masters and agents may dial: an https URL whose host:port
// round-trips, a canonical host:port with a port 1-65535.
func FuzzMemberTags(f *testing.F) {
	for _, s := range [][2]string{
		{"https://127.0.0.1:6443", "127.0.0.1:6444"},
		{"https://[::1]:6443/", "[::1]:6444"},
		{"https://m1.example", "m1.example:6444"},
		{"http://127.0.0.1:6443", "127.0.0.1"},
		{"https://u:p@evil:1/x?y#z", "[m1]:6444"},
		{"https://127.0.0.1:99999", "127.0.0.1:0"},
		{"", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, api, raftAddr string) {
		m := Member{Name: "m", Tags: map[string]string{TagRole: RoleServer, TagAPI: api, TagRaft: raftAddr}}
		if host, err := m.APIHost(); err != nil {
			if !errors.Is(err, ErrInvalidTags) {
				t.Fatalf("APIHost(%q): untyped error %v", api, err)
			}
		} else {
			again, err := (Member{Tags: map[string]string{TagAPI: "https://" + host}}).APIHost()
			if err != nil || again != host || host == "" {
				t.Fatalf("APIHost(%q) = %q, but https://%s gives %q, %v", api, host, host, again, err)
			}
			if h, p, err := net.SplitHostPort(host); err == nil && (h == "" || !validPort(p)) {
				t.Fatalf("APIHost(%q) = %q: no host or port to dial", api, host)
			}
		}
		addr, err := m.RaftAddr()
		if err != nil {
			if !errors.Is(err, ErrInvalidTags) {
				t.Fatalf("RaftAddr(%q): untyped error %v", raftAddr, err)
			}
			return
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || !validPort(port) || net.JoinHostPort(host, port) != addr {
			t.Fatalf("RaftAddr(%q) = %q (%q, %q, %v)", raftAddr, addr, host, port, err)
		}
	})
}
