// Package state is the go-memdb state store behind the Skiff FSM: one
// generic table of encoded Kubernetes objects plus the applied index.
package state

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

const (
	tableObjects = "objects"
	tableIndex   = "index"

	indexID        = "id"
	indexNamespace = "namespace"
	indexUID       = "uid"
)

// schema returns the memdb schema. Objects are keyed by
// "resource\x00namespace\x00name" so that a prefix scan lists one resource,
// optionally within one namespace.
func schema() *memdb.DBSchema {
	return &memdb.DBSchema{
		Tables: map[string]*memdb.TableSchema{
			tableObjects: {
				Name: tableObjects,
				Indexes: map[string]*memdb.IndexSchema{
					indexID: {
						Name:    indexID,
						Unique:  true,
						Indexer: &memdb.StringFieldIndex{Field: "ID"},
					},
					indexNamespace: {
						Name:         indexNamespace,
						AllowMissing: true,
						Indexer:      &memdb.StringFieldIndex{Field: "Namespace"},
					},
					indexUID: {
						Name:         indexUID,
						Unique:       true,
						AllowMissing: true,
						Indexer:      &memdb.StringFieldIndex{Field: "UID"},
					},
				},
			},
			tableIndex: {
				Name: tableIndex,
				Indexes: map[string]*memdb.IndexSchema{
					indexID: {
						Name:    indexID,
						Unique:  true,
						Indexer: &memdb.StringFieldIndex{Field: "Name"},
					},
				},
			},
		},
	}
}

// Key identifies one object: its resource ("configmaps" for the core group,
// "apps/deployments" otherwise), namespace ("" for cluster-scoped kinds) and name.
type Key struct {
	Resource  string `json:"r"`
	Namespace string `json:"ns,omitempty"`
	Name      string `json:"n"`
}

// ID is the primary-key form of the key.
func (k Key) ID() string { return k.Resource + "\x00" + k.Namespace + "\x00" + k.Name }

func (k Key) String() string {
	if k.Namespace == "" {
		return fmt.Sprintf("%s/%s", k.Resource, k.Name)
	}
	return fmt.Sprintf("%s/%s/%s", k.Resource, k.Namespace, k.Name)
}

// Object is one stored object. Objects held by the store are shared and must
// never be modified: copy before changing.
type Object struct {
	ID          string
	Key         Key
	Namespace   string // duplicated from Key for the namespace index
	UID         string
	CreateIndex uint64
	ModifyIndex uint64
	// Data is the object encoded as JSON, without metadata.resourceVersion
	// (which is ModifyIndex).
	Data []byte
}

// NewObject builds an object with its ID filled in.
func NewObject(k Key, uid string, data []byte, create, modify uint64) *Object {
	return &Object{ID: k.ID(), Key: k, Namespace: k.Namespace, UID: uid, Data: data, CreateIndex: create, ModifyIndex: modify}
}

type indexEntry struct {
	Name  string
	Value uint64
}
