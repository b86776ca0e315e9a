package server

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/server/pki"
)

// Encryption at rest (fsm/encryption.go has the mechanism). This master's
// part: the root key in <data-dir>/tls/encryption.key, the first data key,
// rotation, and a fresh snapshot whenever the primary key changes, so that
// the stored snapshot is sealed with it.

// rootKeyInfo separates the derived root key from other uses of the CA key.
const rootKeyInfo = "skiff encryption-at-rest root key v1"

// loadEncryptionRootKey reads the root key, or takes the one received at
// join, or makes one: a new cluster draws a random key, a master of a
// cluster made before encryption at rest derives it from the CA key (as
// every master of that cluster does, so they agree without talking). The
// FSM gets it before it applies anything.
func (s *Server) loadEncryptionRootKey(received []byte, newCluster bool) error {
	path := s.cfg.encryptionKeyPath()
	key := received
	if len(key) == 0 {
		var err error
		key, err = readRootKeyFile(path)
		switch {
		case err == nil:
		case !errors.Is(err, os.ErrNotExist):
			return err
		case newCluster:
			key = make([]byte, fsm.RootKeySize)
			_, _ = rand.Read(key)
		default:
			if key, err = deriveRootKey(s.ca.KeyPEM); err != nil {
				return err
			}
			s.log.Info("derived the encryption-at-rest root key from the cluster CA key", "file", path)
		}
	}
	if len(key) != fsm.RootKeySize {
		return fmt.Errorf("%s: root key is %d bytes, want %d", path, len(key), fsm.RootKeySize)
	}
	if err := pki.WriteFileAtomic(path, encodeRootKey(key), 0o600); err != nil {
		return err
	}
	s.rootKey = key
	return nil
}

// readRootKeyFile reads the root key file (base64); os.ErrNotExist when
// there is none.
func readRootKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// encodeRootKey is the root key file's content.
func encodeRootKey(key []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(key) + "\n")
}

func deriveRootKey(caKeyPEM []byte) ([]byte, error) {
	b, _ := pem.Decode(caKeyPEM)
	if b == nil {
		return nil, errors.New("derive encryption root key: no PEM block in the CA key")
	}
	key, err := hkdf.Key(sha256.New, b.Bytes, nil, rootKeyInfo, fsm.RootKeySize)
	if err != nil {
		return nil, fmt.Errorf("derive encryption root key: %w", err)
	}
	return key, nil
}

// fsmEncryption is the FSM's configuration: nil when encryption is off
// and no root key is known.
func (s *Server) fsmEncryption() *fsm.Encryption {
	c := &fsm.Encryption{RootKey: s.rootKey}
	if !s.cfg.DisableSecretsEncryption {
		c.Resources = s.cfg.EncryptionResources
	}
	return c
}

// sealer is the API's apiserver.Sealer.
type sealer struct{ s *Server }

func (z sealer) Seal(ctx context.Context, m *fsm.Mutation) error {
	return z.s.seal(ctx, m)
}

// seal seals m, making the cluster's first data key when there is none
// yet (a new cluster before its leader made one, or one just upgraded).
// Until every voter runs a version that opens sealed entries (a rolling
// upgrade), there is no key and m is proposed as it is.
func (s *Server) seal(ctx context.Context, m *fsm.Mutation) error {
	err := s.fsm.Seal(m)
	if !errors.Is(err, fsm.ErrNoEncryptionKey) {
		return sealError(err)
	}
	made, err := s.ensureEncryptionKey(ctx)
	if err != nil {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("encryption at rest: making the first data key: %v", err))
	}
	if !made {
		return nil
	}
	return sealError(s.fsm.Seal(m))
}

func sealError(err error) error {
	if err == nil {
		return nil
	}
	return apierrors.NewInternalError(fmt.Errorf("encryption at rest: %w", err))
}

// ensureEncryptionKey makes the first data key unless the state has one,
// and waits until this master has applied it. It reports whether a key
// exists: not while encryption is off, nor while a voter still runs a
// version without encryption at rest (it would misapply sealed entries).
func (s *Server) ensureEncryptionKey(ctx context.Context) (bool, error) {
	if s.cfg.DisableSecretsEncryption {
		return false, nil
	}
	if len(s.fsm.EncryptionStatus().Keys) > 0 {
		return true, nil
	}
	if !s.votersCanEncrypt(ctx) {
		return false, nil
	}
	_, err := s.addEncryptionKey(ctx, true)
	return err == nil, err
}

// encryptionProbeInterval spaces the checks of the voters' versions while
// one of them lacks encryption at rest.
const encryptionProbeInterval = 10 * time.Second

// votersCanEncrypt reports whether every voter serves the encryption
// status endpoint, i.e. runs a version that opens sealed entries. Once
// true it stays true; a false answer is kept for encryptionProbeInterval.
func (s *Server) votersCanEncrypt(ctx context.Context) bool {
	if s.encCapable.Load() {
		return true
	}
	s.encProbeMu.Lock()
	defer s.encProbeMu.Unlock()
	if s.encCapable.Load() {
		return true
	}
	if time.Since(s.encProbedAt) < encryptionProbeInterval {
		return false
	}
	s.encProbedAt = time.Now()
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return false
	}
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage != raft.Voter || string(srv.ID) == s.cfg.NodeName {
			continue
		}
		if err := s.probeEncryption(ctx, string(srv.ID)); err != nil {
			s.log.Info("encryption at rest waits until every master runs a version that has it", "master", srv.ID, "err", err)
			return false
		}
	}
	s.encCapable.Store(true)
	return true
}

// probeEncryption asks master name for its encryption status.
func (s *Server) probeEncryption(ctx context.Context, name string) error {
	m, ok := s.lookupMember(name)
	if !ok || m.APIURL == "" {
		return errors.New("no member record")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.APIURL+"/internal/v1/secrets-encrypt", nil)
	if err != nil {
		return err
	}
	resp, err := s.peerClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /internal/v1/secrets-encrypt: %s", resp.Status)
	}
	return nil
}

// addEncryptionKey proposes the next data key and waits until this master
// applied it. With ifNone, a key made meanwhile by another master is
// success (AlreadyExists); without, it is a conflict.
func (s *Server) addEncryptionKey(ctx context.Context, ifNone bool) (string, error) {
	m, err := s.fsm.NewEncryptionKey(time.Now())
	if err != nil {
		return "", err
	}
	entry, err := fsm.EncodeMutation(m)
	if err != nil {
		return "", err
	}
	res, err := s.apply(ctx, entry)
	if err != nil {
		return "", err
	}
	if res.Err != nil {
		if ifNone && res.Err.Reason == fsm.ReasonAlreadyExists {
			return m.Key.Name, s.waitApplied(ctx, res.Index)
		}
		return "", res.Err
	}
	if err := s.waitApplied(ctx, res.Index); err != nil {
		return "", err
	}
	s.log.Info("new encryption-at-rest data key", "key", m.Key.Name, "index", res.Index)
	return m.Key.Name, nil
}

// resealLoop takes a snapshot when the primary data key differs from the
// one that sealed this master's latest snapshot: after a rotation (and
// once after encryption is turned on), so that no stored snapshot stays
// sealed with an old key or holds the objects in the clear.
func (s *Server) resealLoop() {
	defer s.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.shutdownCh:
			return
		case <-t.C:
		}
		sealing, primary, snapshotKey := s.fsm.EncryptionProgress()
		if primary == "" && sealing && s.raft.State() == raft.Leader {
			// An upgraded cluster's leader makes the key once every
			// master can open sealed entries.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := s.ensureEncryptionKey(ctx); err != nil {
				s.log.Warn("making the first encryption key", "err", err)
			}
			cancel()
			continue
		}
		if primary == "" || !sealing {
			continue
		}
		if snapshotKey == primary || s.servingError() != nil {
			continue
		}
		if err := s.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			s.log.Warn("snapshot after a new encryption key", "key", primary, "err", err)
			continue
		}
		s.log.Info("snapshot sealed with the new encryption key", "key", primary)
	}
}

// handleEncryptionStatus answers `skiff secrets-encrypt status`.
func (s *Server) handleEncryptionStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, EncryptionStatus{Master: s.cfg.NodeName, EncryptionStatus: s.fsm.EncryptionStatus()})
}

// EncryptionStatus is one master's answer to `skiff secrets-encrypt status`.
type EncryptionStatus struct {
	Master string `json:"master"`
	fsm.EncryptionStatus
}

// handleEncryptionRotate makes a new primary data key. Every master then
// snapshots with it (resealLoop); old keys stay to open older log entries.
func (s *Server) handleEncryptionRotate(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DisableSecretsEncryption {
		http.Error(w, "encryption at rest is off on this master (--secrets-encryption=false)", http.StatusConflict)
		return
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	name, err := s.addEncryptionKey(r.Context(), false)
	if err != nil {
		http.Error(w, "rotate: "+err.Error(), http.StatusConflict)
		return
	}
	writeJSON(w, map[string]string{"key": name})
}
