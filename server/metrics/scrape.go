package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/storage"
)

// Jobs of the targets every master scrapes.
const (
	JobMaster   = "skiff-master"
	JobKubelet  = "kubelet"
	JobCadvisor = "cadvisor"
	JobResource = "resource"
)

// Scraper defaults.
const (
	DefaultScrapeInterval    = 10 * time.Second
	DefaultSampleLimit       = 50000
	DefaultScrapeConcurrency = 16
	// maxBody bounds a scrape's body whatever the sample limit.
	maxBody = 64 << 20
)

// acceptHeader asks for the Prometheus text format (version 0.0.4).
const acceptHeader = "text/plain;version=0.0.4;q=1,*/*;q=0.1"

// Target is one endpoint to scrape.
type Target struct {
	Job      string
	Instance string // host:port, as Prometheus' instance label
	Node     string
	URL      string
	// Client carries the credentials for the target (the master's
	// certificate); nil: http.DefaultClient.
	Client *http.Client
}

// ScraperOptions configure a Scraper.
type ScraperOptions struct {
	// Targets lists what to scrape, asked before every round.
	Targets func() []Target
	// Interval between rounds (DefaultScrapeInterval if 0); Timeout per
	// target (the interval if 0 or longer).
	Interval time.Duration
	Timeout  time.Duration
	// SampleLimit: a scrape with more samples fails as a whole (up 0), as
	// Prometheus' sample_limit (DefaultSampleLimit if 0).
	SampleLimit int
	// Concurrency bounds the targets scraped at once
	// (DefaultScrapeConcurrency if 0).
	Concurrency int
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
}

// Scraper fills a Store from its targets every interval.
type Scraper struct {
	store *Store
	opts  ScraperOptions
	log   *slog.Logger

	scrapes *prometheus.CounterVec
	samples prometheus.Counter
	mu      sync.Mutex
	// failing: targets whose last scrape failed (a log line on each change).
	failing map[string]bool
}

// NewScraper prepares a scraper; Run starts it.
func NewScraper(store *Store, opts ScraperOptions) *Scraper {
	if opts.Interval <= 0 {
		opts.Interval = DefaultScrapeInterval
	}
	if opts.Timeout <= 0 || opts.Timeout > opts.Interval {
		opts.Timeout = opts.Interval
	}
	if opts.SampleLimit <= 0 {
		opts.SampleLimit = DefaultSampleLimit
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultScrapeConcurrency
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	sc := &Scraper{
		store: store, opts: opts, log: opts.Logger.With("component", "scraper"),
		scrapes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_metrics_scrapes_total", Help: "Scrapes this master made into its metrics store, by job and result (ok, failed).",
		}, []string{"job", "result"}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_metrics_samples_appended_total", Help: "Samples this master's scraper appended to its metrics store.",
		}),
		failing: map[string]bool{},
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(sc.scrapes, sc.samples)
	}
	return sc
}

// Run scrapes every interval until ctx is done.
func (sc *Scraper) Run(ctx context.Context) {
	t := time.NewTicker(sc.opts.Interval)
	defer t.Stop()
	for {
		sc.ScrapeOnce(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ScrapeOnce scrapes every target once, at most Concurrency at a time,
// stamping the samples with now (those without their own timestamp).
func (sc *Scraper) ScrapeOnce(ctx context.Context, now time.Time) {
	targets := sc.opts.Targets()
	sem := make(chan struct{}, sc.opts.Concurrency)
	var wg sync.WaitGroup
	for _, t := range targets {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			sc.scrapeTarget(ctx, t, now)
		}()
	}
	wg.Wait()
	// Forget the state of targets that are gone (a deleted node).
	current := make(map[string]bool, len(targets))
	for _, t := range targets {
		current[t.URL] = true
	}
	sc.mu.Lock()
	for u := range sc.failing {
		if !current[u] {
			delete(sc.failing, u)
		}
	}
	sc.mu.Unlock()
}

// scrapeTarget scrapes one target and records up and
// scrape_duration_seconds for it, as Prometheus does.
func (sc *Scraper) scrapeTarget(ctx context.Context, t Target, now time.Time) {
	start := time.Now()
	ts := now.UnixMilli()
	n, err := sc.scrape(ctx, t, ts)
	dur := time.Since(start)
	up := 1.0
	result := "ok"
	if err != nil {
		up, result, n = 0, "failed", 0
	}
	sc.scrapes.WithLabelValues(t.Job, result).Inc()
	sc.noteResult(t, err)

	app := sc.store.Appender(ctx)
	for _, m := range []struct {
		name string
		v    float64
	}{{"up", up}, {"scrape_duration_seconds", dur.Seconds()}, {"scrape_samples_scraped", float64(n)}} {
		if _, aerr := app.Append(0, targetLabels(t, labels.FromStrings(labels.MetricName, m.name)), ts, m.v); aerr != nil && !ignorable(aerr) {
			sc.log.Warn("append scrape status", "target", t.URL, "err", aerr)
		}
	}
	if cerr := app.Commit(); cerr != nil {
		sc.log.Warn("commit scrape status", "target", t.URL, "err", cerr)
	}
}

// noteResult logs a target's change between failing and healthy.
func (sc *Scraper) noteResult(t Target, err error) {
	sc.mu.Lock()
	was := sc.failing[t.URL]
	sc.failing[t.URL] = err != nil
	sc.mu.Unlock()
	switch {
	case err != nil && !was:
		sc.log.Info("scrape target down", "job", t.Job, "target", t.URL, "err", err)
	case err == nil && was:
		sc.log.Info("scrape target up", "job", t.Job, "target", t.URL)
	}
}

// ErrSampleLimit is a scrape with more samples than the limit.
var ErrSampleLimit = errors.New("sample limit exceeded")

// scrape fetches and appends one target's samples, all or none.
func (sc *Scraper) scrape(ctx context.Context, t Target, ts int64) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, sc.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", acceptHeader)
	client := t.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("server returned HTTP status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, err
	}
	if len(body) > maxBody {
		return 0, fmt.Errorf("body larger than %d bytes", maxBody)
	}
	app := sc.store.Appender(ctx)
	n, err := appendText(app, body, t, ts, sc.opts.SampleLimit)
	if err != nil {
		return 0, errors.Join(err, app.Rollback())
	}
	if err := app.Commit(); err != nil {
		return 0, err
	}
	sc.samples.Add(float64(n))
	return n, nil
}

// appendText parses a body in the Prometheus text format and appends its
// samples with the target's labels.
func appendText(app storage.Appender, body []byte, t Target, ts int64, limit int) (int, error) {
	p := textparse.NewPromParser(body, labels.NewSymbolTable(), false)
	var (
		lset labels.Labels
		n    int
	)
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("parse: %w", err)
		}
		if e != textparse.EntrySeries {
			continue
		}
		n++
		if n > limit {
			return n, fmt.Errorf("%w: more than %d samples", ErrSampleLimit, limit)
		}
		_, tp, v := p.Series()
		at := ts
		if tp != nil {
			at = *tp
		}
		p.Labels(&lset)
		if _, err := app.Append(0, targetLabels(t, lset), at, v); err != nil && !ignorable(err) {
			return n, err
		}
	}
}

// targetLabels adds job, instance and node to a series' labels; a label of
// the series with one of those names is kept as exported_<name>, as
// Prometheus does without honor_labels.
func targetLabels(t Target, lset labels.Labels) labels.Labels {
	b := labels.NewBuilder(lset)
	for _, l := range [][2]string{{"job", t.Job}, {"instance", t.Instance}, {"node", t.Node}} {
		if old := lset.Get(l[0]); old != "" {
			b.Set("exported_"+l[0], old)
		}
		b.Set(l[0], l[1])
	}
	return b.Labels()
}

// ignorable: append errors Prometheus counts and skips rather than fail
// the scrape (a sample out of order or repeated).
func ignorable(err error) bool {
	return errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrDuplicateSampleForTimestamp) ||
		errors.Is(err, storage.ErrOutOfBounds) || errors.Is(err, storage.ErrTooOldSample)
}
