package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
)

// RemoteWriteOptions configure Prometheus remote-write from a store to
// external receivers (Prometheus, Mimir, Thanos, VictoriaMetrics): what a
// Prometheus remote_write block holds, the same for every URL.
type RemoteWriteOptions struct {
	URLs []string
	// BearerTokenFile: a file holding the bearer token (re-read as it
	// changes, as Prometheus does).
	BearerTokenFile string
	// Username and PasswordFile: basic authentication.
	Username     string
	PasswordFile string
	// CAFile verifies the receivers' certificates; InsecureSkipVerify
	// does not.
	CAFile             string
	InsecureSkipVerify bool
	// ExternalLabels are added to every series sent (the replica label
	// among them).
	ExternalLabels map[string]string
	// Timeout of one request (30s if 0); MinBackoff and MaxBackoff bound
	// the retries of a failed batch (30ms and 5s if 0), as Prometheus'
	// queue_config.
	Timeout                time.Duration
	MinBackoff, MaxBackoff time.Duration
	// BatchSendDeadline: longest a sample waits for its batch to fill (5s
	// if 0).
	BatchSendDeadline time.Duration
}

// remoteWriteConfig is the Prometheus configuration the options stand for.
func (o RemoteWriteOptions) config() (*config.Config, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("remote write: no URL")
	}
	if o.BearerTokenFile != "" && (o.Username != "" || o.PasswordFile != "") {
		return nil, errors.New("remote write: a bearer token and basic authentication exclude each other")
	}
	conf := &config.Config{}
	b := labels.NewScratchBuilder(len(o.ExternalLabels))
	for k, v := range o.ExternalLabels {
		b.Add(k, v)
	}
	b.Sort()
	conf.GlobalConfig.ExternalLabels = b.Labels()
	for _, raw := range o.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("remote write URL %q: want http(s)://host[:port]/path", raw)
		}
		rw := config.DefaultRemoteWriteConfig
		rw.URL = &commoncfg.URL{URL: u}
		// No scrape manager here: metadata goes in no request.
		rw.MetadataConfig.Send = false
		if o.Timeout > 0 {
			rw.RemoteTimeout = modelDuration(o.Timeout)
		}
		if o.MinBackoff > 0 {
			rw.QueueConfig.MinBackoff = modelDuration(o.MinBackoff)
		}
		if o.MaxBackoff > 0 {
			rw.QueueConfig.MaxBackoff = modelDuration(o.MaxBackoff)
		}
		if o.BatchSendDeadline > 0 {
			rw.QueueConfig.BatchSendDeadline = modelDuration(o.BatchSendDeadline)
		}
		hc := config.DefaultRemoteWriteHTTPClientConfig
		if o.BearerTokenFile != "" {
			hc.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: o.BearerTokenFile}
		}
		if o.Username != "" || o.PasswordFile != "" {
			hc.BasicAuth = &commoncfg.BasicAuth{Username: o.Username, PasswordFile: o.PasswordFile}
		}
		hc.TLSConfig = commoncfg.TLSConfig{CAFile: o.CAFile, InsecureSkipVerify: o.InsecureSkipVerify}
		if err := hc.Validate(); err != nil {
			return nil, fmt.Errorf("remote write %s: %w", u.Redacted(), err)
		}
		rw.HTTPClientConfig = hc
		conf.RemoteWriteConfigs = append(conf.RemoteWriteConfigs, &rw)
	}
	return conf, nil
}

// remoteWriter sends what the store appends to the receivers: Prometheus'
// own remote storage (storage/remote), whose queue managers tail the
// store's WAL (a wlog.Watcher over <dir>/wal), batch, shard, and retry
// recoverable failures (5xx, refused connections) with back-off; the
// store's appends also go to its Appender, which tracks the newest
// timestamp and the ingest rate the shards are sized by.
type remoteWriter struct {
	ws *remote.WriteStorage
}

// remoteFlushDeadline bounds the time a stopping master spends sending what
// is queued (Prometheus waits a minute; a master's stop should not): the
// rest is in the WAL, but a restarted master sends only what it appends
// afterwards.
const remoteFlushDeadline = 5 * time.Second

// EnableRemoteWrite starts remote-write from the store. Samples appended
// before it are not sent (as a Prometheus started afresh).
func (s *Store) EnableRemoteWrite(opts RemoteWriteOptions, reg prometheus.Registerer, log *slog.Logger) error {
	conf, err := opts.config()
	if err != nil {
		return err
	}
	if log == nil {
		log = slog.Default()
	}
	ws := remote.NewWriteStorage(log.With("component", "remote-write"), reg, s.dir, remoteFlushDeadline, nil, false)
	if err := ws.ApplyConfig(conf); err != nil {
		_ = ws.Close()
		return fmt.Errorf("remote write: %w", err)
	}
	// The head tells the WAL watchers at once when samples are written,
	// rather than their polling finding them.
	s.db.SetWriteNotified(ws)
	s.remote = &remoteWriter{ws: ws}
	return nil
}

// closeRemote stops remote-write, sending what it can within its flush
// deadline.
func (s *Store) closeRemote() error {
	if s.remote == nil {
		return nil
	}
	return s.remote.ws.Close()
}

func modelDuration(d time.Duration) model.Duration { return model.Duration(d) }

// fanAppender appends to the store and to the remote storage's tracker
// (float samples are all the scraper appends).
type fanAppender struct {
	storage.Appender
	tracker storage.Appender
}

func (f fanAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	ref, err := f.Appender.Append(ref, l, t, v)
	if err != nil {
		return ref, err
	}
	_, _ = f.tracker.Append(0, l, t, v) // tracks timestamps only, never fails
	return ref, nil
}

func (f fanAppender) Commit() error {
	if err := f.Appender.Commit(); err != nil {
		return errors.Join(err, f.tracker.Rollback())
	}
	return f.tracker.Commit()
}

func (f fanAppender) Rollback() error {
	return errors.Join(f.Appender.Rollback(), f.tracker.Rollback())
}

// appender is the store's appender, fanned out to remote-write when on.
func (s *Store) appender(ctx context.Context) storage.Appender {
	app := s.db.Appender(ctx)
	if s.remote == nil {
		return app
	}
	return fanAppender{Appender: app, tracker: s.remote.ws.Appender(ctx)}
}
