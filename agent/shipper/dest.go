package shipper

import (
	"context"
	"errors"
	"regexp"
	"time"
)

// Destination is where records go: a master's ingest endpoint or an
// external store. Send gets encoded records (the contract's NDJSON lines)
// in order and returns nil only once the destination has them.
type Destination interface {
	// Name names the destination's cursor (a file name).
	Name() string
	Send(ctx context.Context, payloads [][]byte) error
}

// PermanentError is a refusal retrying will not change (a 400 or 403):
// the batch is counted as dropped for that destination and skipped.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

const (
	batchRecords = 2000
	batchBytes   = 4 << 20 // below the ingest's 8 MiB limit
	// batchLinger: the shortest time between two batches to one
	// destination (a line waits at most this plus the read interval).
	batchLinger = 500 * time.Millisecond
)

var nameRE = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func destName(kind, addr string) string { return kind + "-" + nameRE.ReplaceAllString(addr, "_") }

// destinations keeps one delivery loop per destination: the masters as
// Config.Masters lists them (checked every few seconds) and the
// forwarders. A master gone from the list for 10 minutes loses its cursor.
func (s *Shipper) destinations(ctx context.Context) {
	type running struct {
		cancel   context.CancelFunc
		done     chan struct{}
		lastSeen time.Time
	}
	run := map[string]*running{}
	start := func(d Destination) {
		dctx, cancel := context.WithCancel(ctx)
		r := &running{cancel: cancel, done: make(chan struct{}), lastSeen: time.Now()}
		run[d.Name()] = r
		go func() { defer close(r.done); s.deliver(dctx, d) }()
	}
	for _, f := range s.cfg.Forwarders {
		start(f)
	}
	forwarders := len(run)
	_ = forwarders
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		now := time.Now()
		for _, addr := range s.cfg.Masters() {
			d := &masterDest{name: destName("master", addr), addr: addr, rt: s.cfg.Transport}
			if r, ok := run[d.name]; ok {
				r.lastSeen = now
				continue
			}
			s.log.Info("log shipper: delivering to master", "master", addr)
			start(d)
		}
		for name, r := range run {
			if len(name) > 7 && name[:7] == "master-" && now.Sub(r.lastSeen) > 10*time.Minute {
				r.cancel()
				<-r.done
				delete(run, name)
				if err := s.spool.forget(name); err != nil {
					s.log.Warn("forget log destination", "destination", name, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			for _, r := range run {
				<-r.done
			}
			return
		case <-tick.C:
		}
	}
}

// deliver sends the spool to d from its cursor on, in batches, retrying
// with backoff; only d's cursor waits while d is down.
func (s *Shipper) deliver(ctx context.Context, d Destination) {
	name := d.Name()
	next := s.spool.cursor(name)
	backoff := 500 * time.Millisecond
	failing := false
	var lastSend time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.spool.wait(next):
		}
		// Batches at most every batchLinger unless a full one waits.
		if wait := batchLinger - time.Since(lastSend); wait > 0 && s.spool.peekSeq()-next < batchRecords {
			if !sleepCtx(ctx, wait) {
				return
			}
		}
		lastSend = time.Now()
		next = max(next, s.spool.cursor(name))
		batch, after, err := s.spool.read(next, batchRecords, batchBytes)
		if err != nil || len(batch) == 0 {
			if err != nil {
				s.log.Warn("read log spool", "destination", name, "err", err)
			}
			next = max(next, after)
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return
			}
			continue
		}
		err = d.Send(ctx, batch)
		var perm *PermanentError
		switch {
		case err == nil:
			s.m.shipped.WithLabelValues(name).Add(float64(len(batch)))
			if failing {
				s.log.Info("log destination reachable again", "destination", name)
				failing = false
			}
			backoff = 500 * time.Millisecond
		case errors.As(err, &perm):
			s.log.Error("log destination refused records; dropping them", "destination", name, "records", len(batch), "err", err)
			s.m.dropped.WithLabelValues(name, "rejected").Add(float64(len(batch)))
		default:
			if ctx.Err() != nil {
				return
			}
			s.m.sendErrors.WithLabelValues(name).Inc()
			if !failing {
				s.log.Warn("log destination unreachable; retrying", "destination", name, "err", err)
				failing = true
			}
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		if err := s.spool.ack(name, after); err != nil {
			s.log.Warn("save log cursor", "destination", name, "err", err)
		}
		next = after
		s.m.lag.WithLabelValues(name).Set(float64(s.spool.peekSeq() - min(next, s.spool.peekSeq())))
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
