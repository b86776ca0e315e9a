package logstore

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
	"github.com/skiff-io/skiff/client/logrecord"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Tails a user may hold open at once, and all users together.
const (
	MaxTailsPerUser = 4
	MaxTails        = 64
)

// Body limits of an ingest request: the body as sent, and decompressed.
const (
	maxBodyBytes         = 8 << 20
	maxDecompressedBytes = 32 << 20
)

// Scope is what a caller may read.
type Scope struct {
	// AllPodLogs: container records of every namespace; else those of
	// PodLogs (namespaces where the caller may get pods/log).
	AllPodLogs bool
	PodLogs    []string
	// AllEvents / Events: the same for kind=event (get events).
	AllEvents bool
	Events    []string
	// Nodes: agent and server records (get nodes/proxy).
	Nodes bool
	// User names the caller (the bound on concurrent tails is per user).
	User string
}

func (sc Scope) empty() bool {
	return !sc.AllPodLogs && len(sc.PodLogs) == 0 && !sc.AllEvents && len(sc.Events) == 0 && !sc.Nodes
}

// filter is the scope as LogsQL ("" for everything).
func (sc Scope) filter() string {
	if sc.AllPodLogs && sc.AllEvents && sc.Nodes {
		return ""
	}
	var or []string
	if sc.AllPodLogs {
		or = append(or, "kind:="+quote(logrecord.KindContainer))
	} else if len(sc.PodLogs) > 0 {
		or = append(or, "(kind:="+quote(logrecord.KindContainer)+" "+inFilter(logrecord.FieldNamespace, sc.PodLogs)+")")
	}
	if sc.AllEvents {
		or = append(or, "kind:="+quote(logrecord.KindEvent))
	} else if len(sc.Events) > 0 {
		or = append(or, "(kind:="+quote(logrecord.KindEvent)+" "+inFilter(logrecord.FieldNamespace, sc.Events)+")")
	}
	if sc.Nodes {
		or = append(or, inFilter(logrecord.FieldKind, []string{logrecord.KindAgent, logrecord.KindServer}))
	}
	return "(" + strings.Join(or, " or ") + ")"
}

// Access is the API's authorization seam (the server implements it with
// its authenticator and authorizer).
type Access interface {
	// Ingest authorizes an ingest request: node "" lets the caller
	// ingest records of any node, else only records whose node field is
	// node. An error is an API status (401, 403).
	Ingest(r *http.Request) (node string, err error)
	// Read is what the caller may read; namespace, when set, is the one
	// namespace asked for.
	Read(r *http.Request, namespace string) (Scope, error)
}

// API serves /logs/v1/ingest, /logs/v1/query and /logs/v1/tail.
type API struct {
	store   *Store
	access  Access
	timeout time.Duration
	log     *slog.Logger
	mux     *http.ServeMux

	tailsMu sync.Mutex
	tails   map[string]int
	tailsN  int
}

// NewAPI serves store's records to callers access allows.
func NewAPI(store *Store, access Access, timeout time.Duration, logger *slog.Logger) *API {
	if timeout <= 0 {
		timeout = DefaultQueryTimeout
	}
	if logger == nil {
		logger = slog.Default()
	}
	a := &API{store: store, access: access, timeout: timeout, log: logger.With("component", "logs-api"), mux: http.NewServeMux(), tails: map[string]int{}}
	a.mux.HandleFunc("POST /logs/v1/ingest", a.ingest)
	a.mux.HandleFunc("GET /logs/v1/query", a.query)
	a.mux.HandleFunc("GET /logs/v1/tail", a.tail)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteStatus(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
	})
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// WriteStatus answers err as a metav1.Status.
func WriteStatus(w http.ResponseWriter, err error) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		st = apierrors.NewInternalError(err)
	}
	status := st.Status()
	status.Kind, status.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(status.Code))
	_ = json.NewEncoder(w).Encode(status)
}

// IngestResponse is the answer to an ingest request.
type IngestResponse struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

func tooLarge(limit int) error {
	return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d bytes", limit))
}

func (a *API) ingest(w http.ResponseWriter, r *http.Request) {
	node, err := a.access.Ingest(r)
	if err != nil {
		WriteStatus(w, err)
		return
	}
	if r.ContentLength > maxBodyBytes {
		WriteStatus(w, tooLarge(maxBodyBytes))
		return
	}
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	var rd io.Reader = body
	limit := int64(maxBodyBytes)
	switch strings.ToLower(r.Header.Get("Content-Encoding")) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			WriteStatus(w, ingestReadError(err, maxBodyBytes))
			return
		}
		defer zr.Close()
		rd, limit = zr, maxDecompressedBytes
	default:
		WriteStatus(w, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType,
			Reason: metav1.StatusReasonUnsupportedMediaType, Message: "unsupported Content-Encoding " + strconv.Quote(r.Header.Get("Content-Encoding"))}})
		return
	}
	data, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		WriteStatus(w, ingestReadError(err, maxBodyBytes))
		return
	}
	if int64(len(data)) > limit {
		WriteStatus(w, tooLarge(int(limit)))
		return
	}
	recs, raws, err := decodeBatch(data, node)
	if err != nil {
		WriteStatus(w, err)
		return
	}
	acc, dup, err := a.store.Ingest(recs, raws)
	if err != nil {
		a.log.Error("ingest", "err", err)
		WriteStatus(w, apierrors.NewServiceUnavailable(err.Error()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(IngestResponse{Accepted: acc, Duplicates: dup})
}

func ingestReadError(err error, limit int) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(limit)
	}
	return apierrors.NewBadRequest(fmt.Sprintf("read the body: %v", err))
}

// nodeKinds are the kinds a node's credentials may ingest: its
// containers', its agent's and an embedded master's own logs; events come
// from the masters (server/eventlog.go), and a kind the scopes do not
// know would be readable only cluster-wide.
var nodeKinds = map[string]bool{logrecord.KindContainer: true, logrecord.KindAgent: true, logrecord.KindServer: true}

// decodeBatch parses NDJSON records; node, when set, is the only node the
// records may name.
func decodeBatch(data []byte, node string) ([]logrecord.Record, [][]byte, error) {
	var recs []logrecord.Record
	var raws [][]byte
	var dec logrecord.Decoder
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		rec, err := dec.Decode(l)
		if err != nil {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("line %d: %v", line, err))
		}
		if err := rec.Validate(); err != nil {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("line %d: %v", line, err))
		}
		if node != "" && rec.Fields[logrecord.FieldNode] != node {
			return nil, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "logs"}, "",
				fmt.Errorf("line %d: node %q may ingest only records of its own node, not %q", line, node, rec.Fields[logrecord.FieldNode]))
		}
		if node != "" && !nodeKinds[rec.Fields[logrecord.FieldKind]] {
			return nil, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "logs"}, "",
				fmt.Errorf("line %d: node %q may not ingest records of kind %q", line, node, rec.Fields[logrecord.FieldKind]))
		}
		recs = append(recs, rec)
		raws = append(raws, l)
	}
	return recs, raws, nil
}

// searchFromRequest reads the query parameters and the caller's scope.
func (a *API) searchFromRequest(r *http.Request) (Search, Scope, error) {
	qv := r.URL.Query()
	ns := qv.Get("namespace")
	scope, err := a.access.Read(r, ns)
	if err != nil {
		return Search{}, scope, err
	}
	sr, err := searchFromValues(qv, scope)
	return sr, scope, err
}

// searchFromValues makes the search of a request's parameters within
// the caller's scope.
func searchFromValues(qv url.Values, scope Scope) (Search, error) {
	ns := qv.Get("namespace")
	if scope.empty() {
		what := "any namespace"
		if ns != "" {
			what = "namespace " + strconv.Quote(ns)
		}
		return Search{}, apierrors.NewForbidden(schema.GroupResource{Resource: "pods/log"}, "",
			fmt.Errorf("the caller may read the logs of no records in %s", what))
	}
	sr := Search{LogsQL: qv.Get("query")}
	var filters []string
	if f := scope.filter(); f != "" {
		filters = append(filters, f)
	}
	for _, p := range []struct{ param, field string }{
		{"namespace", logrecord.FieldNamespace}, {"pod", logrecord.FieldPod}, {"container", logrecord.FieldContainer},
		{"node", logrecord.FieldNode}, {"kind", logrecord.FieldKind},
	} {
		if v := qv.Get(p.param); v != "" {
			filters = append(filters, p.field+":="+quote(v))
		}
	}
	sr.Filter = strings.Join(filters, " ")
	now := time.Now()
	if v := qv.Get("since"); v != "" {
		d, ok := logstorage.TryParseDuration(v)
		if !ok || d <= 0 {
			return Search{}, badParam("since", v)
		}
		sr.Start = now.Add(-time.Duration(d))
	}
	if v := qv.Get("start"); v != "" {
		t, err := parseTime(v)
		if err != nil {
			return Search{}, badParam("start", v)
		}
		sr.Start = t
	}
	if v := qv.Get("end"); v != "" {
		t, err := parseTime(v)
		if err != nil {
			return Search{}, badParam("end", v)
		}
		sr.End = t
	}
	if v := qv.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return Search{}, badParam("limit", v)
		}
		sr.Limit = min(n, MaxLimit)
	}
	return sr, nil
}

func badParam(name, v string) error {
	return apierrors.NewBadRequest(fmt.Sprintf("invalid parameter %q: %q", name, v))
}

// parseTime: RFC 3339 or unix seconds (with a fraction).
func parseTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return time.Time{}, err
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
}

func queryError(err error) error {
	var pe *ParseError
	switch {
	case errors.As(err, &pe):
		return apierrors.NewBadRequest(pe.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return apierrors.NewTimeoutError("the log query timed out", 0)
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return err
	}
	return apierrors.NewInternalError(err)
}

func (a *API) query(w http.ResponseWriter, r *http.Request) {
	sr, _, err := a.searchFromRequest(r)
	if err != nil {
		WriteStatus(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	res, err := a.store.Run(ctx, sr)
	if err != nil {
		WriteStatus(w, queryError(err))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	for i := range res {
		bw.Write(mustJSON(&res[i]))
		bw.WriteByte('\n')
	}
	_ = bw.Flush()
}

// acquireTail takes one of user's tail slots; release gives it back.
func (a *API) acquireTail(user string) (release func(), err error) {
	a.tailsMu.Lock()
	defer a.tailsMu.Unlock()
	if a.tails[user] >= MaxTailsPerUser {
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("user %q has %d log tails open already (the most one user may have)", user, MaxTailsPerUser), 1)
	}
	if a.tailsN >= MaxTails {
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("%d log tails are open (the most this server serves)", MaxTails), 1)
	}
	a.tails[user]++
	a.tailsN++
	return func() {
		a.tailsMu.Lock()
		defer a.tailsMu.Unlock()
		a.tailsN--
		if a.tails[user]--; a.tails[user] <= 0 {
			delete(a.tails, user)
		}
	}, nil
}

func (a *API) tail(w http.ResponseWriter, r *http.Request) {
	sr, scope, err := a.searchFromRequest(r)
	if err != nil {
		WriteStatus(w, err)
		return
	}
	// Parse once up front, so bad LogsQL is a 400 and not a broken stream.
	if _, err := sr.build(); err != nil {
		WriteStatus(w, queryError(err))
		return
	}
	release, err := a.acquireTail(scope.User)
	if err != nil {
		WriteStatus(w, err)
		return
	}
	defer release()
	// Each poll is one query, bounded as a query is.
	sr.Timeout = a.timeout
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	err = a.store.Tail(r.Context(), sr, func(res []Result) error {
		var b bytes.Buffer
		for i := range res {
			b.Write(mustJSON(&res[i]))
			b.WriteByte('\n')
		}
		if _, err := w.Write(b.Bytes()); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		a.log.Warn("tail ended", "err", err)
	}
}
