package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/pki"
	"github.com/skiff-io/skiff/server/snapshot"
)

// ClusterResetRestore makes the master of cfg's data dir the only voter of
// a cluster whose state is the snapshot file (`skiff server
// --cluster-reset --cluster-reset-restore FILE`). The file opens with the
// server token (cfg.Token, or the data dir's token file). An empty data
// dir takes the cluster's keys from the file, so the restored master is
// the same cluster for its nodes and kubeconfigs; a data dir of the same
// cluster keeps its keys and has its Raft state moved aside
// (raft-old-<time>); a data dir of another cluster is refused.
func ClusterResetRestore(cfg Config, path string) (*ResetReport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	tlsDir := cfg.tlsDir()
	existingCA, caErr := pki.ReadCAFiles(tlsDir)
	token := cfg.Token
	if token == "" {
		b, err := os.ReadFile(cfg.tokenPath())
		if err != nil {
			return nil, errors.New("--cluster-reset-restore needs the server token of the snapshot's cluster: --token or --token-file (or the data dir's token file)")
		}
		token = strings.TrimSpace(string(b))
	}
	_, secret, err := pki.ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("server token: %w", err)
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && snapshotNameRE.MatchString(path) {
		// A snapshot's name: this master's file of it, else its copy in
		// --snapshot-copy-dir or the S3 bucket.
		local := filepath.Join(cfg.snapshotDir(), path+snapshotExt)
		if _, err := os.Stat(local); err == nil {
			path = local
		} else {
			targets, err := cfg.snapshotTargets()
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			path, err = fetchSnapshotCopy(ctx, targets, path, cfg.snapshotDir())
			cancel()
			if err != nil {
				return nil, err
			}
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr, keys, stream, err := snapshot.Open(bufio.NewReaderSize(f, 1<<20), secret)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if caErr == nil && pki.CAHash(existingCA.CertPEM) != hdr.Cluster {
		return nil, fmt.Errorf("%s is a snapshot of another cluster than the data dir %s's: move the data dir aside to restore into an empty one", path, cfg.DataDir)
	}
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return nil, err
	}
	if caErr != nil {
		// A new data dir: the cluster's keys from the file.
		if _, err := pki.LoadCA([]byte(keys.CACert), []byte(keys.CAKey)); err != nil {
			return nil, fmt.Errorf("snapshot's CA: %w", err)
		}
		if pki.CAHash([]byte(keys.CACert)) != hdr.Cluster {
			return nil, errors.New("snapshot's CA does not match its header")
		}
		for _, fl := range []struct {
			name string
			data []byte
			mode os.FileMode
		}{
			{"ca.crt", []byte(keys.CACert), 0o644},
			{"ca.key", []byte(keys.CAKey), 0o600},
			{pki.ServiceAccountKeyFile, []byte(keys.ServiceAccountKey), 0o600},
			{filepath.Base(cfg.encryptionKeyPath()), encodeRootKey(keys.EncryptionKey), 0o600},
		} {
			if err := pki.WriteFileAtomic(filepath.Join(tlsDir, fl.name), fl.data, fl.mode); err != nil {
				return nil, err
			}
		}
		if err := pki.WriteFileAtomic(cfg.tokenPath(), []byte(keys.Token+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	// The data dir's own key (a data dir of the same cluster keeps its
	// keys), else the file's.
	rootKey, err := readRootKeyFile(cfg.encryptionKeyPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
		rootKey = keys.EncryptionKey
	case err != nil:
		return nil, err
	}
	st := fsm.New(fsm.Options{Logger: slog.New(slog.DiscardHandler)})
	enc := &fsm.Encryption{RootKey: rootKey}
	if !cfg.DisableSecretsEncryption {
		enc.Resources = cfg.EncryptionResources // the stored snapshot seals them
	}
	if err := st.SetEncryption(enc); err != nil {
		return nil, err
	}
	if err := st.Restore(io.NopCloser(stream)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Index() != hdr.Index {
		return nil, fmt.Errorf("%s: state at index %d, header says %d", path, st.Index(), hdr.Index)
	}
	// The old Raft state goes aside, whole.
	dir := cfg.raftDir()
	if _, err := os.Stat(dir); err == nil {
		old := filepath.Join(cfg.DataDir, fmt.Sprintf("raft-old-%d", time.Now().Unix()))
		if err := os.Rename(dir, old); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logs, snaps, _, err := openRaftStores(dir)
	if err != nil {
		return nil, err
	}
	defer logs.Close()
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.raftAddr()))
	conf := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(cfg.NodeName), Address: raft.ServerAddress(cfg.raftAddr()), Suffrage: raft.Voter}}}
	sink, err := snaps.Create(raft.SnapshotVersionMax, hdr.Index, 1, conf, 1, trans)
	if err != nil {
		return nil, err
	}
	fs, err := st.Snapshot()
	if err != nil {
		return nil, err
	}
	if err := fs.Persist(sink); err != nil {
		return nil, err
	}
	if err := logs.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		return nil, err
	}
	rep := &ResetReport{Master: cfg.NodeName, LastIndex: hdr.Index, Applied: hdr.Index, Restored: hdr.Name}
	st.Read().All(func(o *state.Object) bool {
		if !strings.HasPrefix(o.Key.Resource, "skiff.io/") {
			rep.Objects++
		}
		return true
	})
	return rep, nil
}
