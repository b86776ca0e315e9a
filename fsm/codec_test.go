package fsm

import (
	"reflect"
	"testing"

	"github.com/skiff-io/skiff/fsm/state"
)

func TestMutationBinaryRoundTrip(t *testing.T) {
	cases := []Mutation{
		{Op: OpCreate, Key: state.Key{Resource: "configmaps", Namespace: "default", Name: "a"}, UID: "u1", Object: []byte(`{"a":1}`)},
		{Op: OpUpdate, Key: state.Key{Resource: "apps/deployments", Namespace: "ns", Name: "d"}, Object: []byte(`{}`),
			Preconditions: &Preconditions{UID: "u2", ResourceVersion: 1 << 40}},
		{Op: OpDelete, Key: state.Key{Resource: "namespaces", Name: "n"}, Preconditions: &Preconditions{}},
		{Op: OpUpdateStatus, Key: state.Key{Resource: "pods", Namespace: "x", Name: "p"}, Object: []byte(`{"phase":"Running"}`)},
	}
	for _, m := range cases {
		entry, err := EncodeMutation(m)
		if err != nil {
			t.Fatal(err)
		}
		typ, body, err := decodeEntry(entry)
		if err != nil || MessageType(entry[0]) != FramedType || typ != MutationType {
			t.Fatalf("frame %d, type %d, err %v", entry[0], typ, err)
		}
		got, err := decodeMutationBinary(body)
		if err != nil {
			t.Fatalf("decode %+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
		}
		// Every strict prefix is refused, never misread.
		for i := 0; i < len(body); i++ {
			if _, err := decodeMutationBinary(body[:i]); err == nil {
				t.Fatalf("prefix of %d bytes decoded", i)
			}
		}
	}
}
