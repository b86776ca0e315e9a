// Package metrics is the masters' central time-series store: an embedded
// Prometheus TSDB under <data-dir>/metrics (with its WAL), the scraper that
// fills it with the whole cluster's series, the Prometheus HTTP query API
// (PromQL) and the metrics.k8s.io resource metrics answered from it.
//
// Every master keeps its own store and scrapes every target itself, so any
// master answers with the full history after the leader changes or a master
// is lost. The series never go through Raft: its log is for cluster state.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// Defaults sized for an edge master.
const (
	DefaultRetention     = 15 * 24 * time.Hour
	DefaultRetentionSize = int64(1 << 30) // 1 GiB
)

// FormatVersion is the version of the store's layout under
// <data-dir>/metrics (the Prometheus TSDB block and WAL formats), written
// to its VERSION file; a store of another version is refused rather than
// rewritten.
const FormatVersion = 1

const versionFile = "SKIFF_FORMAT_VERSION"

// StoreOptions configure the store.
type StoreOptions struct {
	// Retention drops blocks older than this (DefaultRetention if 0).
	Retention time.Duration
	// RetentionSize bounds the blocks' bytes on disk, oldest dropped first
	// (DefaultRetentionSize if 0, none if negative). The WAL is not
	// counted, as in Prometheus.
	RetentionSize int64
	// Registerer takes the TSDB's own metrics (nil: none).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Store is the embedded TSDB.
type Store struct {
	db  *tsdb.DB
	dir string
	// remote: remote-write, when on (remote.go).
	remote *remoteWriter
}

// OpenStore opens (or creates) the store in dir, replaying its WAL.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.RetentionSize == 0 {
		opts.RetentionSize = DefaultRetentionSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("metrics store: %w", err)
	}
	if err := checkVersion(dir); err != nil {
		return nil, err
	}
	o := tsdb.DefaultOptions()
	o.RetentionDuration = opts.Retention.Milliseconds()
	if opts.RetentionSize > 0 {
		o.MaxBytes = opts.RetentionSize
	}
	db, err := tsdb.Open(dir, opts.Logger.With("component", "tsdb"), opts.Registerer, o, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics store %s: %w", dir, err)
	}
	return &Store{db: db, dir: dir}, nil
}

// checkVersion writes the format version into a new store and refuses a
// store of another version.
func checkVersion(dir string) error {
	p := filepath.Join(dir, versionFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return os.WriteFile(p, []byte(strconv.Itoa(FormatVersion)+"\n"), 0o600)
	}
	if err != nil {
		return fmt.Errorf("metrics store: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v != FormatVersion {
		return fmt.Errorf("metrics store %s: format version %q, this binary reads %d", dir, strings.TrimSpace(string(b)), FormatVersion)
	}
	return nil
}

// Appender starts a batch of samples; Commit makes them durable in the WAL.
func (s *Store) Appender(ctx context.Context) storage.Appender { return s.appender(ctx) }

// Queryable is what PromQL reads.
func (s *Store) Queryable() storage.Queryable { return s.db }

// DB is the underlying TSDB (tests, stats).
func (s *Store) DB() *tsdb.DB { return s.db }

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Close flushes and closes the store; a later OpenStore replays its WAL.
func (s *Store) Close() error { return errors.Join(s.closeRemote(), s.db.Close()) }
