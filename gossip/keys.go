package gossip

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/hashicorp/memberlist"
)

// keyLabel is the HKDF info string of the first gossip key.
const keyLabel = "skiff gossip key v1"

// KeyFromSecret derives the cluster's first gossip key (AES-256, base64)
// from its join secret with HKDF-SHA256.
func KeyFromSecret(secret string) (string, error) {
	if secret == "" {
		return "", errors.New("gossip: empty cluster secret")
	}
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, keyLabel, 32)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// NewKey returns a random gossip key (base64).
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecodeKey checks and decodes a base64 gossip key. Only the canonical
// encoding is accepted (the one a keyring lists): a key written another way
// would be installed and then removed by SetLocalKeys as one it was not
// given, the primary key included.
func DecodeKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key: not base64: %w", err)
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("gossip key: not in canonical base64")
	}
	if err := memberlist.ValidateKey(b); err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	return b, nil
}

// ReadKeyring reads a keyring file (serf's format: a JSON list of base64
// keys, primary first). A missing file is (nil, nil).
func ReadKeyring(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys, err := ParseKeyring(b)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return keys, nil
}

// ErrInvalidKeyring is wrapped by every refusal of ParseKeyring and
// ParseJoinInfo.
var ErrInvalidKeyring = errors.New("invalid gossip keyring")

// ParseKeyring decodes a keyring (serf's format: a JSON list of base64
// keys, primary first) and checks every key.
func ParseKeyring(b []byte) ([]string, error) {
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeyring, err)
	}
	if err := checkKeys(keys); err != nil {
		return nil, err
	}
	return keys, nil
}

func checkKeys(keys []string) error {
	for _, k := range keys {
		if _, err := DecodeKey(k); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidKeyring, err)
		}
	}
	return nil
}

// ParseJoinInfo decodes what a master answers on /internal/v1/gossip and
// checks it: at least one key, every key valid (a member installs them as
// they come), every server address host:port.
func ParseJoinInfo(b []byte) (*JoinInfo, error) {
	var info JoinInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeyring, err)
	}
	if len(info.Keys) == 0 {
		return nil, fmt.Errorf("%w: the master sent no gossip key", ErrInvalidKeyring)
	}
	if err := checkKeys(info.Keys); err != nil {
		return nil, err
	}
	for _, a := range info.Servers {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%w: server address %q: %w", ErrInvalidKeyring, a, err)
		}
	}
	return &info, nil
}

// WriteKeyring writes keys (primary first) to path, readable by the owner
// only.
func WriteKeyring(path string, keys []string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newKeyring(keys []string) (*memberlist.Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("gossip: no encryption key")
	}
	raw := make([][]byte, 0, len(keys))
	for _, k := range keys {
		b, err := DecodeKey(k)
		if err != nil {
			return nil, err
		}
		raw = append(raw, b)
	}
	return memberlist.NewKeyring(raw, raw[0])
}

func encodeKeys(raw [][]byte) []string {
	out := make([]string, len(raw))
	for i, k := range raw {
		out[i] = base64.StdEncoding.EncodeToString(k)
	}
	return out
}
