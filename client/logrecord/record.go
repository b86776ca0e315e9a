// Package logrecord is the wire contract of the cluster's log pipeline
// (docs/logging.md): the record a node's shipper sends to
// POST /logs/v1/ingest and the master's log store keeps, its field names
// and kinds, its encoding (one JSON object per line) and its validation.
// The shipper (agent/shipper) and the store (server/logstore) both use it.
package logrecord

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Record is one log record.
type Record struct {
	// Source names one byte stream; Offset strictly increases within it
	// (the store's dedup key).
	Source string            `json:"source"`
	Offset int64             `json:"offset"`
	Time   time.Time         `json:"time"`
	Msg    string            `json:"msg"`
	Fields map[string]string `json:"fields,omitempty"`
}

// Record kinds (the "kind" field).
const (
	KindContainer = "container"
	KindAgent     = "agent"
	KindServer    = "server"
	KindEvent     = "event"
)

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
	// FieldSource and FieldOffset hold the record's source and offset in
	// the store (they are not sent as fields).
	FieldSource = "source"
	FieldOffset = "offset"
	// LabelPrefix starts the fields that carry the pod's labels.
	LabelPrefix = "label."
)

// Limits of one record.
const (
	MaxSourceLen    = 1024
	MaxFields       = 200
	MaxFieldNameLen = 256
	MaxFieldLen     = 64 << 10
)

// wire is the encoded form: the time as RFC 3339 with nanoseconds, UTC.
type wire struct {
	Source string            `json:"source"`
	Offset int64             `json:"offset"`
	Time   string            `json:"time"`
	Msg    string            `json:"msg"`
	Fields map[string]string `json:"fields,omitempty"`
}

// Encode is the record's JSON line (no newline). Invalid UTF-8 in the
// message or fields is replaced with U+FFFD (JSON escapes control bytes),
// so any input, binary included, makes a valid line.
func (r *Record) Encode() ([]byte, error) {
	w := wire{Source: validUTF8(r.Source), Offset: r.Offset, Time: r.Time.UTC().Format(time.RFC3339Nano), Msg: validUTF8(r.Msg), Fields: r.Fields}
	for k, v := range r.Fields {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			fixed := make(map[string]string, len(r.Fields))
			for k, v := range r.Fields {
				fixed[validUTF8(k)] = validUTF8(v)
			}
			w.Fields = fixed
			break
		}
	}
	b, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("encode log record: %w", err)
	}
	return b, nil
}

// Decode parses one encoded record (not validated: see Validate).
func Decode(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("decode log record: %w", err)
	}
	return r, nil
}

// Validate checks a decoded record against the contract's limits.
func (r *Record) Validate() error {
	switch {
	case r.Source == "":
		return fmt.Errorf("source is required")
	case len(r.Source) > MaxSourceLen:
		return fmt.Errorf("source is longer than %d bytes", MaxSourceLen)
	case r.Offset < 0:
		return fmt.Errorf("offset must not be negative")
	case r.Time.IsZero():
		return fmt.Errorf("time is required")
	case len(r.Fields) > MaxFields:
		return fmt.Errorf("more than %d fields", MaxFields)
	}
	for k, v := range r.Fields {
		if k == "" || k[0] == '_' {
			return fmt.Errorf("field name %q: must not be empty or start with '_'", k)
		}
		if len(k) > MaxFieldNameLen || len(v) > MaxFieldLen {
			return fmt.Errorf("field %q is too long", k)
		}
	}
	return nil
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
