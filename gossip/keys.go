package gossip

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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

// DecodeKey checks and decodes a base64 gossip key.
func DecodeKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key: not base64: %w", err)
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
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	for _, k := range keys {
		if _, err := DecodeKey(k); err != nil {
			return nil, fmt.Errorf("keyring %s: %w", path, err)
		}
	}
	return keys, nil
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
