package fsm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiff-io/skiff/fsm/state"
)

// Encryption at rest. Objects of the encrypted resources (Secrets by
// default) never reach the Raft log or a snapshot in the clear:
//
//   - The proposer seals a mutation's object (Seal) before it encodes the
//     entry; Apply opens it, so the in-memory state, reads, watches and
//     digests see plain objects and are the same on every master.
//   - Persist seals those objects in the snapshot; Restore opens them.
//
// Sealing is AES-256-GCM with a data key (DEK). Data keys are random and
// live in the state itself, as objects of EncryptionKeysResource named
// key-NNNNNN, each wrapped (AES-256-GCM) with the cluster's root key, which
// never enters the log: masters hold it in their data dir and a joining
// master receives it over the server-token path. Because the wrapped keys
// are replicated like any object, every master, and every snapshot, has
// every key, and a rotation (a new key object, the highest name being the
// primary) reaches all masters in log order, before any entry sealed with
// it. Old keys stay, to open old log entries and snapshots.
//
// A sealed object's bytes are
//
//	"skiff:enc:aesgcm:v1:" key-name ":" nonce(12) ciphertext+tag
//
// with the object's store key as additional data, so a sealed value copied
// to another object does not open.

// EncryptionKeysResource holds the wrapped data keys (cluster-scoped,
// served by no API).
const EncryptionKeysResource = "skiff.io/encryptionkeys"

// RootKeySize is the size of the root key (AES-256).
const RootKeySize = 32

const sealPrefix = "skiff:enc:aesgcm:v1:"

// ErrNoEncryptionKey: the state holds no data key yet (a new or upgraded
// cluster); the caller creates one (NewEncryptionKey) and seals again.
var ErrNoEncryptionKey = errors.New("no encryption key in the state yet")

// Encryption configures encryption at rest.
type Encryption struct {
	// RootKey (RootKeySize bytes) wraps the data keys.
	RootKey []byte
	// Resources are the storage resources sealed ("secrets";
	// "group/resource" outside the core group).
	Resources []string
}

// KeyRecord is the stored form of one data key.
type KeyRecord struct {
	Created time.Time `json:"created"`
	// Wrapped is the data key sealed with the root key.
	Wrapped []byte `json:"wrapped"`
}

type encryption struct {
	root      cipher.AEAD
	resources map[string]bool
	mu        sync.Mutex
	deks      map[[sha256.Size]byte]cipher.AEAD // by record name and data
}

func newEncryption(c *Encryption) (*encryption, error) {
	if c == nil {
		return nil, nil
	}
	root, err := newAEAD(c.RootKey)
	if err != nil {
		return nil, fmt.Errorf("encryption root key: %w", err)
	}
	e := &encryption{root: root, resources: map[string]bool{}, deks: map[[sha256.Size]byte]cipher.AEAD{}}
	for _, r := range c.Resources {
		if r == EncryptionKeysResource {
			return nil, fmt.Errorf("encryption: %s cannot be encrypted", r)
		}
		e.resources[r] = true
	}
	return e, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != RootKeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), RootKeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal returns the sealed form of plain: prefix, key name, nonce, ciphertext.
func seal(aead cipher.AEAD, name string, plain, aad []byte) []byte {
	out := make([]byte, 0, len(sealPrefix)+len(name)+1+aead.NonceSize()+len(plain)+aead.Overhead())
	out = append(out, sealPrefix...)
	out = append(out, name...)
	out = append(out, ':')
	return sealRaw(out, aead, plain, aad)
}

// sealRaw appends a random nonce and the ciphertext of plain to out.
func sealRaw(out []byte, aead cipher.AEAD, plain, aad []byte) []byte {
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, aad)
}

// sealedKeyName returns the name of the data key that sealed b.
func sealedKeyName(b []byte) (string, []byte, error) {
	rest, ok := bytes.CutPrefix(b, []byte(sealPrefix))
	if !ok {
		return "", nil, errors.New("not a sealed value")
	}
	name, body, ok := bytes.Cut(rest, []byte{':'})
	if !ok || len(name) == 0 {
		return "", nil, errors.New("sealed value names no key")
	}
	return string(name), body, nil
}

func open(aead cipher.AEAD, body, aad []byte) ([]byte, error) {
	if len(body) < aead.NonceSize() {
		return nil, errors.New("sealed value too short")
	}
	return aead.Open(nil, body[:aead.NonceSize()], body[aead.NonceSize():], aad)
}

func keyRecordKey(name string) state.Key {
	return state.Key{Resource: EncryptionKeysResource, Name: name}
}

// dek returns the data key of record o.
func (e *encryption) dek(o *state.Object) (cipher.AEAD, error) {
	id := sha256.Sum256(append([]byte(o.Key.Name+"\x00"), o.Data...))
	e.mu.Lock()
	defer e.mu.Unlock()
	if a := e.deks[id]; a != nil {
		return a, nil
	}
	var rec KeyRecord
	if err := json.Unmarshal(o.Data, &rec); err != nil {
		return nil, fmt.Errorf("encryption key %s: %w", o.Key.Name, err)
	}
	raw, err := open(e.root, rec.Wrapped, []byte(o.Key.ID()))
	if err != nil {
		return nil, fmt.Errorf("encryption key %s does not open with this master's root key: %w", o.Key.Name, err)
	}
	a, err := newAEAD(raw)
	if err != nil {
		return nil, fmt.Errorf("encryption key %s: %w", o.Key.Name, err)
	}
	e.deks[id] = a
	return a, nil
}

// getter is what reads a key record: a snapshot or a write transaction.
type getter interface {
	Get(state.Key) *state.Object
	List(resource, namespace, after string, fn func(*state.Object) bool)
}

// primary returns the newest data key of snap (nil when there is none).
func primaryKey(snap getter) *state.Object {
	var last *state.Object
	snap.List(EncryptionKeysResource, "", "", func(o *state.Object) bool { last = o; return true })
	return last
}

// sealObject seals data (of key k) with the primary key of snap.
func (e *encryption) sealObject(snap getter, k state.Key, data []byte) ([]byte, string, error) {
	rec := primaryKey(snap)
	if rec == nil {
		return nil, "", ErrNoEncryptionKey
	}
	aead, err := e.dek(rec)
	if err != nil {
		return nil, "", err
	}
	return seal(aead, rec.Key.Name, data, []byte(k.ID())), rec.Key.Name, nil
}

// openObject opens a sealed value of key k with the data key it names.
func (e *encryption) openObject(snap getter, k state.Key, sealed []byte) ([]byte, error) {
	if e == nil {
		return nil, errors.New("sealed object, but this master has no encryption root key")
	}
	name, body, err := sealedKeyName(sealed)
	if err != nil {
		return nil, err
	}
	rec := snap.Get(keyRecordKey(name))
	if rec == nil {
		return nil, fmt.Errorf("sealed with encryption key %s, which the state does not hold", name)
	}
	aead, err := e.dek(rec)
	if err != nil {
		return nil, err
	}
	plain, err := open(aead, body, []byte(k.ID()))
	if err != nil {
		return nil, fmt.Errorf("sealed with key %s: %w", name, err)
	}
	return plain, nil
}

// Encrypts reports whether objects of resource are sealed.
func (f *FSM) Encrypts(resource string) bool {
	return f.enc != nil && f.enc.resources[resource]
}

// Seal replaces the object of m with its sealed form when m's resource is
// encrypted; it uses the primary key of the current state.
// ErrNoEncryptionKey means none exists yet.
func (f *FSM) Seal(m *Mutation) error {
	if !f.Encrypts(m.Key.Resource) || len(m.Object) == 0 {
		return nil
	}
	if !json.Valid(m.Object) {
		return fmt.Errorf("seal %s: object is not valid JSON", m.Key)
	}
	sealed, _, err := f.enc.sealObject(f.Read(), m.Key, m.Object)
	if err != nil {
		return fmt.Errorf("seal %s: %w", m.Key, err)
	}
	m.Sealed, m.Object = sealed, nil
	return nil
}

// unseal opens the sealed object of m in place (inside Apply). A value that
// does not open is refused; every master decides the same, since the keys
// are in the state (a master with another root key diverges, and the
// state digests find it).
func (f *FSM) unseal(txn *state.WriteTxn, m *Mutation) *Error {
	if len(m.Sealed) == 0 {
		return nil
	}
	plain, err := f.enc.openObject(txn, m.Key, m.Sealed)
	if err != nil {
		return &Error{Reason: ReasonInvalid, Key: m.Key, Message: "cannot open sealed object: " + err.Error()}
	}
	if !json.Valid(plain) {
		return &Error{Reason: ReasonInvalid, Key: m.Key, Message: "sealed object is not valid JSON"}
	}
	m.Object, m.Sealed = plain, nil
	return nil
}

// NewEncryptionKey returns the mutation that creates the next data key (a
// random one, wrapped with the root key); applied, it becomes the primary.
// Two masters racing make the same name: one create wins, the other gets
// AlreadyExists and should read the state again.
func (f *FSM) NewEncryptionKey(now time.Time) (Mutation, error) {
	if f.enc == nil {
		return Mutation{}, errors.New("encryption at rest is off on this master")
	}
	next := 1
	if p := primaryKey(f.Read()); p != nil {
		n, err := strconv.Atoi(strings.TrimPrefix(p.Key.Name, "key-"))
		if err != nil {
			return Mutation{}, fmt.Errorf("encryption key name %q: %w", p.Key.Name, err)
		}
		next = n + 1
	}
	k := keyRecordKey(fmt.Sprintf("key-%06d", next))
	dek := make([]byte, RootKeySize)
	_, _ = rand.Read(dek)
	rec := KeyRecord{Created: now.UTC().Truncate(time.Second), Wrapped: sealRaw(nil, f.enc.root, dek, []byte(k.ID()))}
	data, err := json.Marshal(rec)
	if err != nil {
		return Mutation{}, err
	}
	return Mutation{Op: OpCreate, Key: k, Object: data}, nil
}

// EncryptionKey describes one data key.
type EncryptionKey struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Primary bool      `json:"primary"`
}

// EncryptionStatus is what `skiff secrets-encrypt status` shows of one
// master.
type EncryptionStatus struct {
	Enabled   bool            `json:"enabled"`
	Resources []string        `json:"resources"`
	Keys      []EncryptionKey `json:"keys"`
	// Objects counts the stored objects of the encrypted resources.
	Objects int `json:"objects"`
	// SnapshotIndex and SnapshotKey: the latest snapshot this master
	// wrote, and the key that sealed it ("" if none did).
	SnapshotIndex uint64 `json:"snapshotIndex"`
	SnapshotKey   string `json:"snapshotKey"`
}

// EncryptionStatus reports the keys and the latest snapshot's key.
func (f *FSM) EncryptionStatus() EncryptionStatus {
	st := EncryptionStatus{Enabled: f.enc != nil, Resources: []string{}}
	snap := f.Read()
	if f.enc != nil {
		for r := range f.enc.resources {
			st.Resources = append(st.Resources, r)
			st.Objects += snap.Count(r, "")
		}
		slices.Sort(st.Resources)
	}
	st.Keys = encryptionKeys(snap)
	f.snapMu.Lock()
	st.SnapshotIndex, st.SnapshotKey = f.lastSnapIndex, f.lastSnapKey
	f.snapMu.Unlock()
	return st
}

// EncryptionProgress is what a master's reseal loop checks every few
// seconds, without counting the sealed objects as EncryptionStatus does:
// whether any resource is sealed, the primary key ("" before the first)
// and the key the latest snapshot was sealed with.
func (f *FSM) EncryptionProgress() (sealing bool, primary, snapshotKey string) {
	if keys := encryptionKeys(f.Read()); len(keys) > 0 {
		primary = keys[len(keys)-1].Name
	}
	f.snapMu.Lock()
	snapshotKey = f.lastSnapKey
	f.snapMu.Unlock()
	return f.enc != nil && len(f.enc.resources) > 0, primary, snapshotKey
}

// encryptionKeys lists the data keys in the state, oldest first, the
// newest marked primary.
func encryptionKeys(snap *state.Snapshot) []EncryptionKey {
	keys := []EncryptionKey{}
	snap.List(EncryptionKeysResource, "", "", func(o *state.Object) bool {
		var rec KeyRecord
		_ = json.Unmarshal(o.Data, &rec) // a bad record shows with no time
		keys = append(keys, EncryptionKey{Name: o.Key.Name, Created: rec.Created})
		return true
	})
	if n := len(keys); n > 0 {
		keys[n-1].Primary = true
	}
	return keys
}
