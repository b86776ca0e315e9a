package shipper

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiff-io/skiff/client/logrecord"
)

// Forwarders to external stores, for users who outgrow the masters' log
// store. Each is a Destination with its own cursor in the spool.

func decodeAll(payloads [][]byte) []logrecord.Record {
	out := make([]logrecord.Record, 0, len(payloads))
	for _, p := range payloads {
		if r, err := logrecord.Decode(p); err == nil {
			out = append(out, r)
		}
	}
	return out
}

func post(ctx context.Context, client *http.Client, u, contentType string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "skiff-log-shipper")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return b, nil
	case resp.StatusCode == http.StatusBadRequest:
		return nil, &PermanentError{Err: fmt.Errorf("%s: %s: %s", u, resp.Status, bytes.TrimSpace(b))}
	default:
		return nil, fmt.Errorf("%s: %s: %s", u, resp.Status, bytes.TrimSpace(b))
	}
}

// withPath is u with path p when u has none.
func withPath(u, p string) (string, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	if pu.Scheme != "http" && pu.Scheme != "https" {
		return "", fmt.Errorf("%q: want an http or https URL", u)
	}
	if pu.Path == "" || pu.Path == "/" {
		pu.Path = p
	}
	return pu.String(), nil
}

// lokiLabels are the fields that make a Loki stream (the others, high in
// cardinality, go into the line's structured metadata).
var lokiLabels = []string{logrecord.FieldKind, logrecord.FieldCluster, logrecord.FieldNode, logrecord.FieldNamespace, logrecord.FieldPod, logrecord.FieldContainer, logrecord.FieldStream}

// LokiForwarder pushes to Loki's push API (/loki/api/v1/push, JSON).
type LokiForwarder struct {
	url    string
	client *http.Client
}

// NewLokiForwarder forwards to the Loki at u (its push path is added when
// u has no path).
func NewLokiForwarder(u string) (*LokiForwarder, error) {
	full, err := withPath(u, "/loki/api/v1/push")
	if err != nil {
		return nil, err
	}
	return &LokiForwarder{url: full, client: &http.Client{}}, nil
}

func (f *LokiForwarder) Name() string { return "loki" }

func (f *LokiForwarder) Send(ctx context.Context, payloads [][]byte) error {
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][]any           `json:"values"`
	}
	var streams []*stream
	byKey := map[string]*stream{}
	for _, r := range decodeAll(payloads) {
		labels := map[string]string{}
		var key strings.Builder
		for _, l := range lokiLabels {
			if v := r.Fields[l]; v != "" {
				labels[l] = v
				key.WriteString(l + "=" + v + "\x00")
			}
		}
		meta := map[string]string{"source": r.Source, "offset": strconv.FormatInt(r.Offset, 10)}
		for k, v := range r.Fields {
			if _, ok := labels[k]; !ok {
				meta[k] = v
			}
		}
		s := byKey[key.String()]
		if s == nil {
			s = &stream{Stream: labels}
			byKey[key.String()] = s
			streams = append(streams, s)
		}
		s.Values = append(s.Values, []any{strconv.FormatInt(r.Time.UnixNano(), 10), r.Msg, meta})
	}
	body, err := json.Marshal(map[string]any{"streams": streams})
	if err != nil {
		return err
	}
	_, err = post(ctx, f.client, f.url, "application/json", body)
	return err
}

// ElasticsearchForwarder indexes with the bulk API; each record's _id is
// its source and offset, so a batch sent again creates no duplicates.
type ElasticsearchForwarder struct {
	url, index string
	client     *http.Client
}

// NewElasticsearchForwarder forwards to the Elasticsearch at u; the URL's
// path names the index (skiff-logs when it has none).
func NewElasticsearchForwarder(u string) (*ElasticsearchForwarder, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if pu.Scheme != "http" && pu.Scheme != "https" {
		return nil, fmt.Errorf("%q: want an http or https URL", u)
	}
	index := strings.Trim(pu.Path, "/")
	if index == "" {
		index = "skiff-logs"
	}
	pu.Path = "/_bulk"
	return &ElasticsearchForwarder{url: pu.String(), index: index, client: &http.Client{}}, nil
}

func (f *ElasticsearchForwarder) Name() string { return "elasticsearch" }

func (f *ElasticsearchForwarder) Send(ctx context.Context, payloads [][]byte) error {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for _, r := range decodeAll(payloads) {
		doc := map[string]any{"@timestamp": r.Time.UTC().Format(time.RFC3339Nano), "message": r.Msg, "source": r.Source, "offset": r.Offset}
		for k, v := range r.Fields {
			doc[k] = v
		}
		if err := enc.Encode(map[string]any{"create": map[string]string{"_index": f.index, "_id": r.Source + ":" + strconv.FormatInt(r.Offset, 10)}}); err != nil {
			return err
		}
		if err := enc.Encode(doc); err != nil {
			return err
		}
	}
	b, err := post(ctx, f.client, f.url, "application/x-ndjson", body.Bytes())
	if err != nil {
		return err
	}
	var resp struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return fmt.Errorf("elasticsearch bulk answer: %w", err)
	}
	if !resp.Errors {
		return nil
	}
	for _, it := range resp.Items {
		for _, res := range it {
			switch {
			case res.Status < 300, res.Status == http.StatusConflict: // created, or there already
			case res.Status == http.StatusTooManyRequests || res.Status >= 500:
				return fmt.Errorf("elasticsearch bulk: item status %d: %s", res.Status, res.Error)
			default:
				return &PermanentError{Err: fmt.Errorf("elasticsearch bulk: item status %d: %s", res.Status, res.Error)}
			}
		}
	}
	return nil
}

// otlpAttrs maps record fields to OpenTelemetry semantic conventions.
var otlpAttrs = map[string]string{
	logrecord.FieldNamespace: "k8s.namespace.name", logrecord.FieldPod: "k8s.pod.name", logrecord.FieldPodUID: "k8s.pod.uid",
	logrecord.FieldContainer: "k8s.container.name", logrecord.FieldRestart: "k8s.container.restart_count", logrecord.FieldStream: "log.iostream",
	logrecord.FieldNode: "k8s.node.name", logrecord.FieldCluster: "k8s.cluster.name",
}

// OTLPForwarder sends OTLP/HTTP logs in the protocol's JSON encoding.
type OTLPForwarder struct {
	url    string
	client *http.Client
}

// NewOTLPForwarder forwards to the OTLP/HTTP endpoint u (/v1/logs added
// when u has no path).
func NewOTLPForwarder(u string) (*OTLPForwarder, error) {
	full, err := withPath(u, "/v1/logs")
	if err != nil {
		return nil, err
	}
	return &OTLPForwarder{url: full, client: &http.Client{}}, nil
}

func (f *OTLPForwarder) Name() string { return "otlp" }

type otlpKV struct {
	Key   string `json:"key"`
	Value struct {
		StringValue string `json:"stringValue"`
	} `json:"value"`
}

func kv(k, v string) otlpKV {
	a := otlpKV{Key: k}
	a.Value.StringValue = v
	return a
}

func (f *OTLPForwarder) Send(ctx context.Context, payloads [][]byte) error {
	type logRecord struct {
		TimeUnixNano         string   `json:"timeUnixNano"`
		ObservedTimeUnixNano string   `json:"observedTimeUnixNano"`
		SeverityNumber       int      `json:"severityNumber,omitempty"`
		SeverityText         string   `json:"severityText,omitempty"`
		BodyValue            any      `json:"body"`
		Attributes           []otlpKV `json:"attributes"`
	}
	// One resource per node and cluster (all records of a batch share
	// them); the rest are the records' attributes.
	var recs []logRecord
	var node, cluster string
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	for _, r := range decodeAll(payloads) {
		node, cluster = r.Fields[logrecord.FieldNode], r.Fields[logrecord.FieldCluster]
		lr := logRecord{TimeUnixNano: strconv.FormatInt(r.Time.UnixNano(), 10), ObservedTimeUnixNano: now,
			BodyValue: map[string]string{"stringValue": r.Msg}}
		if r.Fields[logrecord.FieldStream] == "stderr" {
			lr.SeverityNumber, lr.SeverityText = 17, "ERROR"
		} else if r.Fields[logrecord.FieldStream] == "stdout" {
			lr.SeverityNumber, lr.SeverityText = 9, "INFO"
		}
		keys := make([]string, 0, len(r.Fields))
		for k := range r.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == logrecord.FieldNode || k == logrecord.FieldCluster {
				continue
			}
			name := k
			if n, ok := otlpAttrs[k]; ok {
				name = n
			}
			lr.Attributes = append(lr.Attributes, kv(name, r.Fields[k]))
		}
		lr.Attributes = append(lr.Attributes, kv("skiff.source", r.Source), kv("skiff.offset", strconv.FormatInt(r.Offset, 10)))
		recs = append(recs, lr)
	}
	body, err := json.Marshal(map[string]any{"resourceLogs": []any{map[string]any{
		"resource":  map[string]any{"attributes": []otlpKV{kv("k8s.node.name", node), kv("k8s.cluster.name", cluster)}},
		"scopeLogs": []any{map[string]any{"scope": map[string]string{"name": "skiff-log-shipper"}, "logRecords": recs}},
	}}})
	if err != nil {
		return err
	}
	_, err = post(ctx, f.client, f.url, "application/json", body)
	return err
}

// SyslogForwarder sends RFC 5424 messages over TCP with octet counting
// (RFC 6587), one connection kept open.
type SyslogForwarder struct {
	addr string
	mu   sync.Mutex
	conn net.Conn
}

// NewSyslogForwarder forwards to tcp://host:port.
func NewSyslogForwarder(u string) (*SyslogForwarder, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if pu.Scheme != "tcp" || pu.Host == "" {
		return nil, fmt.Errorf("%q: want tcp://host:port", u)
	}
	return &SyslogForwarder{addr: pu.Host}, nil
}

func (f *SyslogForwarder) Name() string { return "syslog" }

func (f *SyslogForwarder) Send(ctx context.Context, payloads [][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		c, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", f.addr)
		if err != nil {
			return err
		}
		f.conn = c
	}
	_ = f.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	w := bufio.NewWriterSize(f.conn, 64<<10)
	for _, r := range decodeAll(payloads) {
		m := syslogMessage(r)
		if _, err := fmt.Fprintf(w, "%d %s", len(m), m); err != nil {
			f.conn.Close()
			f.conn = nil
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.conn.Close()
		f.conn = nil
		return err
	}
	return nil
}

// syslogMessage is r in RFC 5424: facility user, severity err for stderr
// and info otherwise, APP-NAME the container (or the record's kind), the
// fields as structured data (SD-ID skiff@32473, the documentation
// enterprise number of RFC 5612), the message in UTF-8 after a BOM.
func syslogMessage(r logrecord.Record) []byte {
	pri := 1*8 + 6
	if r.Fields[logrecord.FieldStream] == "stderr" {
		pri = 1*8 + 3
	}
	app := r.Fields[logrecord.FieldContainer]
	if app == "" {
		app = r.Fields[logrecord.FieldKind]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 %s %s %s - - [skiff@32473", pri, r.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		syslogName(r.Fields[logrecord.FieldNode], 255), syslogName(app, 48))
	keys := make([]string, 0, len(r.Fields)+2)
	for k := range r.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=\"%s\"", syslogName(k, 32), sdEscape(r.Fields[k]))
	}
	fmt.Fprintf(&b, " offset=\"%d\" source=\"%s\"] \xEF\xBB\xBF", r.Offset, sdEscape(r.Source))
	b.WriteString(r.Msg)
	return b.Bytes()
}

// syslogName keeps the printable ASCII a header field or SD-NAME allows.
func syslogName(s string, max int) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c > 32 && c < 127 && c != '=' && c != ']' && c != '"' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
		if b.Len() == max {
			break
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

func sdEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`)
	return r.Replace(s)
}
