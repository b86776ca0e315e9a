// Package shipper is the node's log shipper (the fluentd role of
// docs/logging-shipper.md): it tails every container's CRI log file and
// takes the agent's (and an embedded master's) own log records, keeps them
// in a bounded on-disk spool, and delivers every record to every master's
// /logs/v1/ingest (and to optional external stores), one cursor per
// destination, with positions checkpointed on disk.
package shipper

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Record is one log record of the ingest contract (/logs/v1/ingest).
type Record struct {
	Source string            `json:"source"`
	Offset int64             `json:"offset"`
	Time   time.Time         `json:"time"`
	Msg    string            `json:"msg"`
	Fields map[string]string `json:"fields"`
}

// Field names of the contract.
const (
	FieldKind      = "kind"
	FieldCluster   = "cluster"
	FieldNode      = "node"
	FieldNamespace = "namespace"
	FieldPod       = "pod"
	FieldPodUID    = "pod_uid"
	FieldContainer = "container"
	FieldRestart   = "restart"
	FieldStream    = "stream"
	FieldPartial   = "partial"
	FieldTruncated = "truncated"
	FieldDropped   = "dropped"
	labelPrefix    = "label."
)

// Kinds of records the shipper sends.
const (
	KindContainer = "container"
	KindAgent     = "agent"
	KindServer    = "server"
)

// wireRecord is the encoded form: time as RFC3339Nano in UTC.
type wireRecord struct {
	Source string            `json:"source"`
	Offset int64             `json:"offset"`
	Time   string            `json:"time"`
	Msg    string            `json:"msg"`
	Fields map[string]string `json:"fields"`
}

// encode is the record's NDJSON line (no newline). Invalid UTF-8 in the
// message or fields is replaced with U+FFFD (JSON escapes control bytes),
// so any input, binary included, makes a valid line.
func (r *Record) encode() ([]byte, error) {
	w := wireRecord{Source: r.Source, Offset: r.Offset, Time: r.Time.UTC().Format(time.RFC3339Nano), Msg: validUTF8(r.Msg), Fields: r.Fields}
	for k, v := range r.Fields {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			fixed := make(map[string]string, len(r.Fields))
			for k, v := range r.Fields {
				fixed[validUTF8(k)] = validUTF8(v)
			}
			w.Fields = fixed
			break
		}
		_ = k
	}
	return json.Marshal(&w)
}

// decodeRecord parses an encoded record (spool payloads).
func decodeRecord(b []byte) (Record, error) {
	var w wireRecord
	if err := json.Unmarshal(b, &w); err != nil {
		return Record{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Record{}, err
	}
	return Record{Source: w.Source, Offset: w.Offset, Time: t, Msg: w.Msg, Fields: w.Fields}, nil
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// droppedRecord reports n lines the shipper dropped (rate limit or a full
// spool), with the fields of the stream they came from.
func droppedRecord(source string, offset int64, t time.Time, fields map[string]string, n int64, why string) Record {
	f := make(map[string]string, len(fields)+1)
	for k, v := range fields {
		f[k] = v
	}
	delete(f, FieldPartial)
	f[FieldDropped] = strconv.FormatInt(n, 10)
	return Record{Source: source, Offset: offset, Time: t, Msg: "skiff shipper: dropped " + strconv.FormatInt(n, 10) + " lines (" + why + ")", Fields: f}
}
