package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// Query bounds' defaults.
const (
	DefaultQueryTimeout    = 2 * time.Minute
	DefaultQueryMaxSamples = 50_000_000
	// DefaultMaxConcurrentQueries: PromQL evaluations at once (as
	// Prometheus' --query.max-concurrency); more wait for a slot within
	// their timeout.
	DefaultMaxConcurrentQueries = 20
	// maxPoints per series of a range query, as Prometheus refuses more.
	maxPoints = 11000
)

// Version is what status/buildinfo reports as the Prometheus version: the
// release of the PromQL engine and TSDB embedded (module v0.316.0).
const Version = "3.16.0"

// APIOptions configure the query API.
type APIOptions struct {
	// Timeout bounds a query's evaluation (DefaultQueryTimeout if 0); a
	// query's own timeout parameter may only shorten it.
	Timeout time.Duration
	// MaxSamples bounds the samples a query holds in memory at once
	// (DefaultQueryMaxSamples if 0).
	MaxSamples int
	// MaxConcurrent bounds the evaluations at once
	// (DefaultMaxConcurrentQueries if 0).
	MaxConcurrent int
	// ExternalLabels are added to the series /federate answers with
	// (those a series does not have itself), as Prometheus does.
	ExternalLabels map[string]string
	Registerer     prometheus.Registerer
	Logger         *slog.Logger
}

// API is the Prometheus HTTP query API (/api/v1/...) over a Store.
type API struct {
	store   *Store
	engine  *promql.Engine
	parser  parser.Parser
	timeout time.Duration
	log     *slog.Logger
	mux     *http.ServeMux
	// slots bounds the evaluations at once.
	slots chan struct{}
	// external: labels /federate adds.
	external map[string]string
}

// NewAPI prepares the query API over store.
func NewAPI(store *Store, opts APIOptions) *API {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultQueryTimeout
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = DefaultQueryMaxSamples
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrentQueries
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	p := parser.NewParser(parser.Options{})
	a := &API{
		store: store,
		engine: promql.NewEngine(promql.EngineOpts{
			Logger: opts.Logger.With("component", "promql"), Reg: opts.Registerer,
			MaxSamples: opts.MaxSamples, Timeout: opts.Timeout,
			LookbackDelta: 5 * time.Minute, EnableAtModifier: true, EnableNegativeOffset: true,
			Parser: p,
		}),
		parser:   p,
		timeout:  opts.Timeout,
		log:      opts.Logger.With("component", "promql-api"),
		mux:      http.NewServeMux(),
		slots:    make(chan struct{}, opts.MaxConcurrent),
		external: opts.ExternalLabels,
	}
	for path, h := range map[string]http.HandlerFunc{
		"/api/v1/query":               a.query,
		"/api/v1/query_range":         a.queryRange,
		"/api/v1/series":              a.series,
		"/api/v1/labels":              a.labelNames,
		"/api/v1/label/{name}/values": a.labelValues,
		"/api/v1/status/buildinfo":    a.buildInfo,
		"/api/v1/metadata":            a.empty(map[string]any{}),
		"/api/v1/query_exemplars":     a.empty([]any{}),
		"/api/v1/targets/metadata":    a.empty([]any{}),
		"/api/v1/rules":               a.empty(map[string]any{"groups": []any{}}),
		"/api/v1/alerts":              a.empty(map[string]any{"alerts": []any{}}),
	} {
		a.mux.HandleFunc("GET "+path, h)
		a.mux.HandleFunc("POST "+path, h)
	}
	a.mux.HandleFunc("GET /federate", a.federate)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
	})
	return a
}

// ServeHTTP serves /api/v1/... (the caller strips its own prefix and
// checks authorization).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Engine errors' types, as Prometheus' API names them.
const (
	errorBadData     = "bad_data"
	errorTimeout     = "timeout"
	errorCanceled    = "canceled"
	errorExec        = "execution"
	errorInternal    = "internal"
	errorUnavailable = "unavailable"
)

type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

type queryData struct {
	ResultType parser.ValueType `json:"resultType"`
	Result     parser.Value     `json:"result"`
}

func writeJSON(w http.ResponseWriter, code int, resp response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(resp)
}

func writeError(w http.ResponseWriter, code int, typ, msg string) {
	writeJSON(w, code, response{Status: "error", ErrorType: typ, Error: msg})
}

func badData(w http.ResponseWriter, err error) {
	writeError(w, http.StatusBadRequest, errorBadData, err.Error())
}

// engineError answers an evaluation error: timeout and cancellation 503,
// too many samples (and other evaluation errors) 422, storage 500.
func engineError(w http.ResponseWriter, err error) {
	var (
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
		stor     promql.ErrStorage
	)
	switch {
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, errorTimeout, err.Error())
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, errorCanceled, err.Error())
	case errors.As(err, &stor):
		writeError(w, http.StatusInternalServerError, errorInternal, err.Error())
	default:
		writeError(w, http.StatusUnprocessableEntity, errorExec, err.Error())
	}
}

// queryContext applies the request's timeout parameter, bounded by the
// API's own timeout.
func (a *API) queryContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	timeout := a.timeout
	if s := r.FormValue("timeout"); s != "" {
		d, err := parseDuration(s)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid parameter \"timeout\": %w", err)
		}
		timeout = min(timeout, d)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	return ctx, cancel, nil
}

func (a *API) query(w http.ResponseWriter, r *http.Request) {
	ts, err := parseTimeParam(r, "time", time.Now())
	if err != nil {
		badData(w, err)
		return
	}
	ctx, cancel, err := a.queryContext(r)
	if err != nil {
		badData(w, err)
		return
	}
	defer cancel()
	q, err := a.engine.NewInstantQuery(ctx, a.store.Queryable(), nil, r.FormValue("query"), ts)
	if err != nil {
		badData(w, err)
		return
	}
	a.exec(ctx, w, q)
}

func (a *API) queryRange(w http.ResponseWriter, r *http.Request) {
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		badData(w, fmt.Errorf("invalid parameter \"start\": %w", err))
		return
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		badData(w, fmt.Errorf("invalid parameter \"end\": %w", err))
		return
	}
	if end.Before(start) {
		badData(w, errors.New("end timestamp must not be before start time"))
		return
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		badData(w, fmt.Errorf("invalid parameter \"step\": %w", err))
		return
	}
	if step <= 0 {
		badData(w, errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"))
		return
	}
	if end.Sub(start)/step > maxPoints {
		badData(w, errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"))
		return
	}
	ctx, cancel, err := a.queryContext(r)
	if err != nil {
		badData(w, err)
		return
	}
	defer cancel()
	q, err := a.engine.NewRangeQuery(ctx, a.store.Queryable(), nil, r.FormValue("query"), start, end, step)
	if err != nil {
		badData(w, err)
		return
	}
	a.exec(ctx, w, q)
}

func (a *API) exec(ctx context.Context, w http.ResponseWriter, q promql.Query) {
	defer q.Close()
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-ctx.Done():
		writeError(w, http.StatusServiceUnavailable, errorTimeout, "query timed out waiting for one of the "+
			strconv.Itoa(cap(a.slots))+" evaluation slots")
		return
	}
	res := q.Exec(ctx)
	if res.Err != nil {
		engineError(w, res.Err)
		return
	}
	warnings, infos := res.Warnings.AsStrings(q.String(), 10, 10)
	writeJSON(w, http.StatusOK, response{Status: "success", Data: queryData{ResultType: res.Value.Type(), Result: res.Value},
		Warnings: warnings, Infos: infos})
}

// Instant evaluates expr at ts (metrics.k8s.io, the CLI's tests).
func (a *API) Instant(ctx context.Context, expr string, ts time.Time) (promql.Vector, error) {
	q, err := a.engine.NewInstantQuery(ctx, a.store.Queryable(), nil, expr, ts)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Vector()
}

// matchersAndRange reads match[], start and end (default: all time).
func (a *API) matchersAndRange(r *http.Request) ([][]*labels.Matcher, int64, int64, error) {
	if err := r.ParseForm(); err != nil {
		return nil, 0, 0, err
	}
	var sets [][]*labels.Matcher
	for _, m := range r.Form["match[]"] {
		ms, err := a.parser.ParseMetricSelector(m)
		if err != nil {
			return nil, 0, 0, err
		}
		sets = append(sets, ms)
	}
	start, err := parseTimeParam(r, "start", minTime)
	if err != nil {
		return nil, 0, 0, err
	}
	end, err := parseTimeParam(r, "end", maxTime)
	if err != nil {
		return nil, 0, 0, err
	}
	return sets, start.UnixMilli(), end.UnixMilli(), nil
}

func limitParam(r *http.Request) (int, error) {
	s := r.FormValue("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid parameter \"limit\": %q", s)
	}
	return n, nil
}

// metadataRequest is a parsed series, labels or label values request.
type metadataRequest struct {
	ctx        context.Context
	q          storage.Querier
	sets       [][]*labels.Matcher
	mint, maxt int64
	limit      int
}

// metadataQuery parses a metadata request's match[] sets, time range and
// limit, opens a querier over the range and answers what f returns, with
// Prometheus' errors. needMatch: at least one match[] is required.
func (a *API) metadataQuery(w http.ResponseWriter, r *http.Request, needMatch bool, f func(*metadataRequest) (any, error)) {
	sets, mint, maxt, err := a.matchersAndRange(r)
	if err != nil {
		badData(w, err)
		return
	}
	if needMatch && len(sets) == 0 {
		badData(w, errors.New("no match[] parameter provided"))
		return
	}
	limit, err := limitParam(r)
	if err != nil {
		badData(w, err)
		return
	}
	ctx, cancel, err := a.queryContext(r)
	if err != nil {
		badData(w, err)
		return
	}
	defer cancel()
	q, err := a.store.Queryable().Querier(mint, maxt)
	if err != nil {
		engineError(w, err)
		return
	}
	defer q.Close()
	data, err := f(&metadataRequest{ctx: ctx, q: q, sets: sets, mint: mint, maxt: maxt, limit: limit})
	if err != nil {
		engineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, response{Status: "success", Data: data})
}

func (a *API) series(w http.ResponseWriter, r *http.Request) {
	a.metadataQuery(w, r, true, func(m *metadataRequest) (any, error) {
		hints := &storage.SelectHints{Start: m.mint, End: m.maxt, Func: "series"}
		var sets []storage.SeriesSet
		for _, ms := range m.sets {
			sets = append(sets, m.q.Select(m.ctx, len(m.sets) > 1, hints, ms...))
		}
		set := sets[0]
		if len(sets) > 1 {
			set = storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
		}
		out := []labels.Labels{}
		for set.Next() {
			if m.limit > 0 && len(out) >= m.limit {
				break
			}
			out = append(out, set.At().Labels())
		}
		return out, set.Err()
	})
}

func (a *API) labelNames(w http.ResponseWriter, r *http.Request) {
	a.labelQuery(w, r, func(ctx context.Context, q storage.Querier, ms []*labels.Matcher) ([]string, error) {
		names, _, err := q.LabelNames(ctx, nil, ms...)
		return names, err
	})
}

func (a *API) labelValues(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		badData(w, fmt.Errorf("invalid label name: %q", name))
		return
	}
	a.labelQuery(w, r, func(ctx context.Context, q storage.Querier, ms []*labels.Matcher) ([]string, error) {
		values, _, err := q.LabelValues(ctx, name, nil, ms...)
		return values, err
	})
}

// labelQuery answers a sorted union of names or values over the match[]
// sets (all series without one).
func (a *API) labelQuery(w http.ResponseWriter, r *http.Request, f func(context.Context, storage.Querier, []*labels.Matcher) ([]string, error)) {
	a.metadataQuery(w, r, false, func(m *metadataRequest) (any, error) {
		sets := m.sets
		if len(sets) == 0 {
			sets = [][]*labels.Matcher{nil}
		}
		seen := map[string]struct{}{}
		for _, ms := range sets {
			vals, err := f(m.ctx, m.q, ms)
			if err != nil {
				return nil, err
			}
			for _, v := range vals {
				seen[v] = struct{}{}
			}
		}
		out := make([]string, 0, len(seen))
		for v := range seen {
			out = append(out, v)
		}
		slices.Sort(out)
		if m.limit > 0 && len(out) > m.limit {
			out = out[:m.limit]
		}
		return out, nil
	})
}

func (a *API) buildInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, response{Status: "success", Data: map[string]string{
		"version": Version, "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": runtime.Version(),
	}})
}

func (a *API) empty(data any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, response{Status: "success", Data: data})
	}
}

// The whole time range, as Prometheus' API uses for a missing start/end.
var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
)

func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	s := r.FormValue(name)
	if s == "" {
		return def, nil
	}
	t, err := parseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid parameter %q: %w", name, err)
	}
	return t, nil
}

// parseTime reads a Unix timestamp in (fractional) seconds or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(t)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration reads seconds (fractional) or a Prometheus duration (5m).
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if ts > float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}
