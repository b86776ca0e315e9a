package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/registry"
)

// Request limits (issue 15), as kube-apiserver's:
//
//   - in flight: at most MaxRequestsInFlight read-only and
//     MaxMutatingRequestsInFlight mutating requests are served at once
//     (--max-requests-inflight 400, --max-mutating-requests-inflight 200);
//     one more is answered 429 TooManyRequests with Retry-After at once,
//     without queueing, and clients retry. Long-running requests (watches,
//     and the log, exec, attach, portforward and proxy subresources) do not
//     count: they would hold a seat for hours.
//   - watches: at most MaxWatchesPerUser watches of one user are open on
//     this server; one more is answered 429 with Retry-After.
//   - bodies: a request body must arrive within RequestBodyTimeout, so a
//     client that sends it slowly (a slowloris) cannot hold a handler and
//     its in-flight seat for ever.
//
// Members of system:masters are exempt from the in-flight and watch limits,
// as kube-apiserver exempts them from its in-flight limit: the cluster
// admin, and the leader's controllers, which call the API in process as
// such a user, can always reach an overloaded server.

// Defaults of the limits (the skiff server flags).
const (
	DefaultMaxRequestsInFlight         = 400
	DefaultMaxMutatingRequestsInFlight = 200
	DefaultMaxWatchesPerUser           = 1000
	DefaultRequestBodyTimeout          = time.Minute
	DefaultWatchStallTimeout           = time.Minute
	// DefaultJSONPatchMaxCopyBytes is kube-apiserver's limit on the bytes
	// the copy operations of one JSON patch may add (JSONPatchMaxCopyBytes).
	DefaultJSONPatchMaxCopyBytes = 3 << 20
)

// retryAfterSeconds is the Retry-After of a 429, as kube-apiserver's
// in-flight filter.
const retryAfterSeconds = 1

// limiter enforces the in-flight and per-user watch limits.
type limiter struct {
	// readOnly and mutating are the seats; nil: no limit.
	readOnly, mutating chan struct{}
	watchesPerUser     int // 0: no limit

	mu      sync.Mutex
	watches map[string]int      // open watches by user name
	replays map[string]*userSem // initial-events turns by user name
}

func newLimiter(readOnly, mutating, watchesPerUser int) *limiter {
	l := &limiter{watchesPerUser: watchesPerUser, watches: map[string]int{}}
	if readOnly > 0 {
		l.readOnly = make(chan struct{}, readOnly)
	}
	if mutating > 0 {
		l.mutating = make(chan struct{}, mutating)
	}
	return l
}

// acquire takes a seat of the pool of the request's verb; ok is false when
// the pool is full. release gives the seat back.
func (l *limiter) acquire(mutating bool) (release func(), ok bool) {
	pool := l.readOnly
	if mutating {
		pool = l.mutating
	}
	if pool == nil {
		return func() {}, true
	}
	select {
	case pool <- struct{}{}:
		return func() { <-pool }, true
	default:
		return nil, false
	}
}

// acquireWatch counts one more watch of user; ok is false (and n the
// number open) at the limit.
func (l *limiter) acquireWatch(user string) (release func(), n int, ok bool) {
	if l.watchesPerUser <= 0 {
		return func() {}, 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n = l.watches[user]
	if n >= l.watchesPerUser {
		return nil, n, false
	}
	l.watches[user] = n + 1
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.watches[user]--; l.watches[user] <= 0 {
				delete(l.watches, user)
			}
		})
	}, n, true
}

// replaysPerUser is how many watches of one user send their initial
// events at once; the user's others wait their turn. Initial events are
// the one part of a watch whose work grows with the state (a list's worth
// of writing each): a client opening a thousand watches at once gets them
// a few at a time, and the server's other requests do not queue behind a
// thousand goroutines writing lists. A watch whose writes make no progress
// for replayYield gives its turn up (its client is not reading: it costs
// no CPU), so that clients that stop reading some of their watches do not
// hold up the initial events of their others.
const (
	replaysPerUser = 4
	replayYield    = 200 * time.Millisecond
)

// userSem is the initial-events turn of one user's watches.
type userSem struct {
	ch   chan struct{}
	refs int
}

// acquireReplay waits for a turn of user's watches to send initial events;
// ok is false when ctx ended first.
func (l *limiter) acquireReplay(ctx context.Context, user string) (release func(), ok bool) {
	l.mu.Lock()
	if l.replays == nil {
		l.replays = map[string]*userSem{}
	}
	sem := l.replays[user]
	if sem == nil {
		sem = &userSem{ch: make(chan struct{}, replaysPerUser)}
		l.replays[user] = sem
	}
	sem.refs++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		if sem.refs--; sem.refs == 0 {
			delete(l.replays, user)
		}
		l.mu.Unlock()
	}
	select {
	case sem.ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-sem.ch; done() }) }, true
	case <-ctx.Done():
		done()
		return nil, false
	}
}

// replayTurn is a watch's turn to send its initial events, given up when
// done or when its writes stall for replayYield.
type replayTurn struct {
	release  func() // idempotent
	progress atomic.Uint64
	seen     uint64 // progress at the last check (the timer's goroutine)
	timer    *time.Timer
}

func newReplayTurn(release func()) *replayTurn {
	t := &replayTurn{release: release}
	t.timer = time.AfterFunc(replayYield, t.check)
	return t
}

func (t *replayTurn) check() {
	if p := t.progress.Load(); p != t.seen {
		t.seen = p
		t.timer.Reset(replayYield)
		return
	}
	t.release()
}

// done gives the turn up.
func (t *replayTurn) done() {
	t.timer.Stop()
	t.release()
}

// progressWriter counts the writes that got through.
type progressWriter struct {
	w    io.Writer
	turn *replayTurn
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.turn.progress.Add(1)
	return n, err
}

// openWatches is the number of watches user has open (tests).
func (l *limiter) openWatches(user string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.watches[user]
}

// longRunningSubresources are served for as long as the client wants, as
// kube-apiserver's BasicLongRunningRequestCheck.
var longRunningSubresources = map[string]bool{
	registry.SubLog: true, registry.SubExec: true, registry.SubAttach: true, registry.SubPortForward: true, "proxy": true,
}

// longRunning reports whether the request may last indefinitely: a watch
// or a streaming subresource.
func (info *requestInfo) longRunning() bool {
	return info.Verb == "watch" || info.Verb == "proxy" || (info.IsResource && longRunningSubresources[info.Subresource])
}

// mutating reports whether the request counts against the mutating pool:
// everything but get, list and watch (as kube-apiserver).
func (info *requestInfo) mutating() bool {
	switch info.Verb {
	case "get", "list", "watch", "head", "options":
		return false
	}
	return true
}

// exempt reports whether u bypasses the in-flight and watch limits.
func exempt(u *auth.User) bool { return u.InGroup(auth.GroupMasters) }

// tooManyRequests answers 429 with Retry-After and a Status of reason
// TooManyRequests.
func (s *APIServer) tooManyRequests(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	s.writeError(w, r, apierrors.NewTooManyRequests(msg, retryAfterSeconds))
}

// tooManyWatches is the answer to a watch over the per-user limit.
func tooManyWatches(user string, limit int) string {
	return fmt.Sprintf("too many watches: user %q has %d watches open on this server, the most allowed (--max-watches-per-user); close some, or retry later", user, limit)
}

// bodyTimeout arranges for the request body to be received within d: the
// connection's (HTTP/1) or stream's (HTTP/2) read deadline is set now and
// cleared once the body has been read to its end, so that it does not
// affect the rest of the request. Requests without a body, and long-running
// ones (an upgraded exec stream reads its connection for hours), are left
// alone.
func bodyTimeout(w http.ResponseWriter, r *http.Request, info *requestInfo, d time.Duration) {
	if d <= 0 || r.Body == nil || r.Body == http.NoBody || info.longRunning() {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return // not supported by this writer (tests' recorders)
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, timeout: d}
}

// deadlineBody clears the read deadline when the body ends, and reports a
// deadline that passed as errBodyTimeout.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	done    bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		if err == io.EOF {
			_ = b.rc.SetReadDeadline(time.Time{})
		} else if isTimeout(err) {
			err = &bodyTimeoutError{timeout: b.timeout, err: err}
		}
	}
	return n, err
}

// bodyTimeoutError is a body not received within the body timeout.
type bodyTimeoutError struct {
	timeout time.Duration
	err     error
}

func (e *bodyTimeoutError) Error() string {
	return fmt.Sprintf("the request body was not received within %s: %v", e.timeout, e.err)
}

func (e *bodyTimeoutError) Unwrap() error { return e.err }

// isTimeout reports whether err is a passed deadline.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &t) && t.Timeout())
}

// requestTimeout is the answer to a body that did not arrive in time: 408
// Request Timeout, reason Timeout.
func requestTimeout(err *bodyTimeoutError) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusRequestTimeout,
		Reason:  metav1.StatusReasonTimeout,
		Message: err.Error(),
	}}
}
