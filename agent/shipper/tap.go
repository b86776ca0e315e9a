package shipper

import (
	"bytes"
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/skiff-io/skiff/client/logrecord"
)

// LogTap collects a process's own log records (the agent's, or an
// embedded master's) for the shipper: Handler tees a slog handler into a
// bounded queue the shipper drains into its spool. When the queue is full
// (no shipper, or one far behind) records are counted in Lost, never
// waited for.
type LogTap struct {
	kind string
	ch   chan logrecord.Record
	lost atomic.Int64
	// reported: how much of lost the shipper has counted (its goroutine
	// only).
	reported int64
}

// NewLogTap makes a tap for records of kind (logrecord.KindAgent or logrecord.KindServer).
func NewLogTap(kind string) *LogTap {
	return &LogTap{kind: kind, ch: make(chan logrecord.Record, 4096)}
}

// Lost is how many records the full queue refused (the shipper counts
// them in skiff_shipper_dropped_lines_total{reason="tap_full"} and
// reports them in a record with "dropped").
func (t *LogTap) Lost() int64 { return t.lost.Load() }

// Handler returns a handler that passes every record to inner and copies
// those at level info or above into the tap, formatted as slog's text
// handler does (without the time, which the record carries).
func (t *LogTap) Handler(inner slog.Handler) slog.Handler {
	text := slog.NewTextHandler(tapWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}})
	return &teeHandler{inner: inner, tap: text}
}

func (t *LogTap) drain(out []logrecord.Record, max int) []logrecord.Record {
	for i := 0; i < max; i++ {
		select {
		case r := <-t.ch:
			out = append(out, r)
		default:
			return out
		}
	}
	return out
}

type tapWriter struct{ t *LogTap }

func (w tapWriter) Write(p []byte) (int, error) {
	r := logrecord.Record{Time: time.Now(), Msg: string(bytes.TrimRight(p, "\n")), Fields: map[string]string{logrecord.FieldKind: w.t.kind}}
	select {
	case w.t.ch <- r:
	default:
		w.t.lost.Add(1)
	}
	return len(p), nil
}

type teeHandler struct {
	inner, tap slog.Handler
}

func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l) || h.tap.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.inner.Enabled(ctx, r.Level) {
		err = h.inner.Handle(ctx, r)
	}
	if h.tap.Enabled(ctx, r.Level) {
		_ = h.tap.Handle(ctx, r) // the tap never fails: a full queue counts as lost
	}
	return err
}

func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &teeHandler{inner: h.inner.WithAttrs(as), tap: h.tap.WithAttrs(as)}
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{inner: h.inner.WithGroup(name), tap: h.tap.WithGroup(name)}
}
