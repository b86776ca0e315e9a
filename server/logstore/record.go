// Package logstore is the master's log store (issue 20, docs/logging.md):
// VictoriaLogs' storage embedded under <data-dir>/logs, fed by the nodes'
// shippers over POST /logs/v1/ingest and read through /logs/v1/query and
// /logs/v1/tail with the caller's RBAC. Every master keeps the whole
// cluster's logs; nothing goes through Raft.
package logstore

import (
	"encoding/json"
	"fmt"
	"time"
)

// Record is one log line as the shippers send it (the wire contract,
// docs/logging.md).
type Record struct {
	// Source names one byte stream; Offset strictly increases within it.
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

// Field names the store gives meaning to.
const (
	FieldKind      = "kind"
	FieldNode      = "node"
	FieldNamespace = "namespace"
	FieldPod       = "pod"
	FieldContainer = "container"
	// FieldSource and FieldOffset hold the record's source and offset in
	// the store (the dedup key, and the order within a source).
	FieldSource = "source"
	FieldOffset = "offset"
)

// streamFields are the stable fields that make a VictoriaLogs stream.
var streamFields = []string{FieldKind, FieldNode, FieldNamespace, FieldPod, FieldContainer}

// Limits of one record.
const (
	maxSourceLen = 1024
	maxFields    = 200
	maxFieldLen  = 64 << 10
)

// validate checks a decoded record.
func (r *Record) validate() error {
	switch {
	case r.Source == "":
		return fmt.Errorf("source is required")
	case len(r.Source) > maxSourceLen:
		return fmt.Errorf("source is longer than %d bytes", maxSourceLen)
	case r.Offset < 0:
		return fmt.Errorf("offset must not be negative")
	case r.Time.IsZero():
		return fmt.Errorf("time is required")
	case len(r.Fields) > maxFields:
		return fmt.Errorf("more than %d fields", maxFields)
	}
	for k, v := range r.Fields {
		if k == "" || k[0] == '_' {
			return fmt.Errorf("field name %q: must not be empty or start with '_'", k)
		}
		if len(k) > 256 || len(v) > maxFieldLen {
			return fmt.Errorf("field %q is too long", k)
		}
	}
	return nil
}

// Result is one record as the query API answers it.
type Result struct {
	Time   time.Time         `json:"time"`
	Msg    string            `json:"msg"`
	Fields map[string]string `json:"fields"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // records and results always encode
	}
	return b
}
