package logstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
	"github.com/skiff-io/skiff/client/logrecord"
)

// Query bounds.
const (
	DefaultLimit = 100
	MaxLimit     = 10_000
	// DefaultQueryTimeout bounds one query's evaluation.
	DefaultQueryTimeout = 30 * time.Second
	// tailWindow: how far back (by record time) a tail's poll looks for
	// records that arrived since the previous poll.
	tailWindow   = 30 * time.Second
	tailInterval = time.Second
	// tailMaxSeen bounds a tail's memory of records already sent.
	tailMaxSeen = 200_000
)

// Search is one query: the user's LogsQL, the filters the API adds, a
// time range and a limit.
type Search struct {
	// LogsQL is the user's query ("" or "*": everything).
	LogsQL string
	// Filter is LogsQL the API ANDs in (field filters, the caller's
	// access), applied to subqueries too.
	Filter string
	// Start and End bound _time (zero: unbounded).
	Start, End time.Time
	Limit      int
	// Timeout bounds each of a tail's polls (0: none).
	Timeout time.Duration
}

// ParseError is a LogsQL syntax error (the API answers 400).
type ParseError struct{ Err error }

func (e *ParseError) Error() string { return "invalid LogsQL: " + e.Err.Error() }
func (e *ParseError) Unwrap() error { return e.Err }

// build parses the search into a query: newest first, limited.
func (sr *Search) build() (*logstorage.Query, error) {
	text := strings.TrimSpace(sr.LogsQL)
	if text == "" {
		text = "*"
	}
	if _, err := logstorage.ParseQuery(text); err != nil {
		return nil, &ParseError{Err: err}
	}
	limit := sr.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	// Newest first; a source's lines of one timestamp by offset (a top-N
	// sort: bounded memory).
	q, err := logstorage.ParseQuery(fmt.Sprintf("%s\n| sort by (_time desc, %s, %s desc) limit %d", text, logrecord.FieldSource, logrecord.FieldOffset, limit))
	if err != nil {
		return nil, &ParseError{Err: err}
	}
	if sr.Filter != "" {
		f, err := logstorage.ParseFilter(sr.Filter)
		if err != nil {
			return nil, fmt.Errorf("internal filter %q: %w", sr.Filter, err)
		}
		q.AddExtraFilters(f)
	}
	if !sr.Start.IsZero() || !sr.End.IsZero() {
		start, end := int64(-1<<63), int64(1<<63-1)
		if !sr.Start.IsZero() {
			start = sr.Start.UnixNano()
		}
		if !sr.End.IsZero() {
			end = sr.End.UnixNano()
		}
		q.AddTimeFilter(start, end)
	}
	return q, nil
}

// Run answers sr from the local store, newest first.
func (s *Store) Run(ctx context.Context, sr Search) ([]Result, error) {
	q, err := sr.build()
	if err != nil {
		return nil, err
	}
	out, err := s.run(ctx, q)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Result) int { return -compareResults(&a, &b) })
	return out, nil
}

func (s *Store) run(ctx context.Context, q *logstorage.Query) ([]Result, error) {
	var mu sync.Mutex
	var out []Result
	qctx := logstorage.NewQueryContext(ctx, &logstorage.QueryStats{}, []logstorage.TenantID{{}}, q, false, nil)
	err := s.storage.RunQuery(qctx, func(_ uint, db *logstorage.DataBlock) {
		rows := db.RowsCount()
		cols := db.GetColumns(false)
		res := make([]Result, rows)
		for i := range res {
			res[i].Fields = map[string]string{}
		}
		for _, c := range cols {
			switch c.Name {
			case "_stream", "_stream_id":
				continue
			case "_time":
				for i, v := range c.Values {
					t, err := time.Parse(time.RFC3339Nano, v)
					if err == nil {
						res[i].Time = t
					}
				}
			case "_msg":
				for i, v := range c.Values {
					res[i].Msg = strings.Clone(v)
				}
			default:
				name := strings.Clone(c.Name)
				for i, v := range c.Values {
					if v != "" {
						res[i].Fields[name] = strings.Clone(v)
					}
				}
			}
		}
		mu.Lock()
		out = append(out, res...)
		mu.Unlock()
	})
	if cerr := ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("log query: %w", cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("log query: %w", err)
	}
	return out, nil
}

// Tail sends the records matching sr as they arrive (oldest first within
// each poll) until ctx ends or send fails. It polls the store after each
// ingestion, at most every second, for records of the last tailWindow;
// a record that arrives later than that behind its own time is not sent.
// At most MaxLimit records go out per poll (sr.Limit is ignored).
func (s *Store) Tail(ctx context.Context, sr Search, send func([]Result) error) error {
	seen := map[string]time.Time{}
	key := func(r *Result) string {
		return r.Fields[logrecord.FieldSource] + "\x00" + r.Fields[logrecord.FieldOffset]
	}
	// Records present at the start are not sent.
	first := true
	tick := time.NewTicker(tailInterval)
	defer tick.Stop()
	for {
		now := time.Now()
		win := sr
		win.Start, win.End = now.Add(-tailWindow), time.Time{}
		win.Limit = MaxLimit
		q, err := win.build()
		if err != nil {
			return err
		}
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if sr.Timeout > 0 {
			pctx, cancel = context.WithTimeout(ctx, sr.Timeout)
		}
		res, err := s.run(pctx, q)
		cancel()
		if err != nil {
			return err
		}
		slices.SortStableFunc(res, func(a, b Result) int { return compareResults(&a, &b) })
		fresh := res[:0]
		for i := range res {
			k := key(&res[i])
			if _, ok := seen[k]; ok {
				continue
			}
			seen[k] = res[i].Time
			fresh = append(fresh, res[i])
		}
		for k, t := range seen {
			if t.Before(win.Start) || len(seen) > tailMaxSeen {
				delete(seen, k)
			}
		}
		if !first && len(fresh) > 0 {
			if err := send(fresh); err != nil {
				return err
			}
		}
		first = false
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed():
		case <-tick.C:
		}
		// At most one poll a second.
		if wait := tailInterval - time.Since(now); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

// compareResults orders by time, then source, then offset (a source's
// lines of one timestamp keep their order).
func compareResults(a, b *Result) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	if c := strings.Compare(a.Fields[logrecord.FieldSource], b.Fields[logrecord.FieldSource]); c != 0 {
		return c
	}
	x, _ := strconv.ParseInt(a.Fields[logrecord.FieldOffset], 10, 64)
	y, _ := strconv.ParseInt(b.Fields[logrecord.FieldOffset], 10, 64)
	return cmp.Compare(x, y)
}

// quote makes a LogsQL string literal.
func quote(s string) string { return strconv.Quote(s) }

// inFilter is `field:in("a","b")`.
func inFilter(field string, values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = quote(v)
	}
	return field + ":in(" + strings.Join(q, ",") + ")"
}
