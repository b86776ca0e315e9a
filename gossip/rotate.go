package gossip

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Fingerprint identifies a key in messages without revealing it.
func Fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])[:8]
}

// Rotate installs a new random key on every member, makes it the primary
// key, then removes every other key. A step that a member refuses stops
// the rotation before old keys are removed (members that have the new key
// keep the old one too, so nobody is cut off).
func Rotate(m Membership) (RotateResult, error) {
	key, err := NewKey()
	if err != nil {
		return RotateResult{}, err
	}
	res := RotateResult{Fingerprint: Fingerprint(key)}
	ks, err := m.InstallKey(key)
	res.Members = ks.Members
	if err != nil || ks.Errors > 0 {
		res.Failed = ks.Failed
		return res, fmt.Errorf("install key: %d of %d members failed: %v", ks.Errors, ks.Members, err)
	}
	ks, err = m.UseKey(key)
	if err != nil || ks.Errors > 0 {
		res.Failed = ks.Failed
		return res, fmt.Errorf("use key: %d of %d members failed: %v", ks.Errors, ks.Members, err)
	}
	list, err := m.ListKeys()
	if err != nil {
		return res, fmt.Errorf("list keys: %w", err)
	}
	old := map[string]bool{}
	for k := range list.Keys {
		old[k] = true
	}
	for _, k := range m.Keys() {
		old[k] = true
	}
	delete(old, key)
	for k := range old {
		ks, err := m.RemoveKey(k)
		if err != nil || ks.Errors > 0 {
			res.Failed = ks.Failed
			return res, fmt.Errorf("remove old key %s: %d of %d members failed: %v", Fingerprint(k), ks.Errors, ks.Members, err)
		}
		res.Removed++
	}
	return res, nil
}
