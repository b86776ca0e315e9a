package apiserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand"
	"net/http/httptest"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/randfill"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// TestSendStoredMatchesDecoded: a watch's initial event sent from the
// stored bytes (sendStored) carries the same object as the decoded and
// re-encoded one, for every kind, on randomly filled objects.
func TestSendStoredMatchesDecoded(t *testing.T) {
	reg := registry.New()
	f := randfill.New().NilChance(0.3).NumElements(0, 3).MaxDepth(8).RandSource(rand.NewSource(1)).Funcs(
		func(q *resource.Quantity, c randfill.Continue) {
			*q = *resource.NewMilliQuantity(c.Int63n(1_000_000), resource.DecimalSI)
		},
		func(tm *metav1.Time, c randfill.Continue) {
			*tm = metav1.Unix(c.Int63n(2_000_000_000), 0)
		},
		func(tm *metav1.MicroTime, c randfill.Continue) {
			*tm = metav1.NewMicroTime(metav1.Unix(c.Int63n(2_000_000_000), c.Int63n(1000)*1000).Time)
		},
		func(x *runtime.RawExtension, c randfill.Continue) { *x = runtime.RawExtension{} },
		func(x *intstr.IntOrString, c randfill.Continue) {
			if c.Bool() {
				*x = intstr.FromInt32(c.Int31())
			} else {
				*x = intstr.FromString(c.String(8))
			}
		},
		func(x *metav1.FieldsV1, c randfill.Continue) { *x = metav1.FieldsV1{Raw: []byte(`{"f:a":{}}`)} },
	)
	for _, k := range reg.Kinds() {
		if k.StoredGVK() != k.GVK {
			// Stored at another version: always sent decoded.
			continue
		}
		if _, err := meta.Accessor(k.New()); err != nil {
			// The custom and external metrics lists: never stored.
			continue
		}
		for i := 0; i < 20; i++ {
			obj := k.New()
			f.Fill(obj)
			m := mustAccessor(obj)
			m.SetName("obj")
			m.SetUID(types.UID("uid"))
			m.SetResourceVersion("")
			data, err := k.Encode(obj)
			if err != nil {
				t.Fatalf("%s: encode: %v", k.GVK, err)
			}
			o := state.NewObject(k.Key(m.GetNamespace(), "obj"), "uid", data, 7, 42)
			if i == 0 {
				// Empty metadata: the resourceVersion goes in alone.
				empty, err := k.Encode(k.New())
				if err != nil || !bytes.Contains(empty, []byte(`"metadata":{}`)) {
					t.Fatalf("%s: encode empty: %v %s", k.GVK, err, empty)
				}
				compareStored(t, k, state.NewObject(o.Key, "", empty, 7, 42))
			}
			compareStored(t, k, o)
		}
	}
}

func compareStored(t *testing.T, k *registry.Kind, o *state.Object) {
	t.Helper()
	rec := httptest.NewRecorder()
	w := &watchWriter{req: &request{w: rec, kind: k}, out: output{kind: outputObject}}
	ok, err := w.sendStored(watch.Added, o)
	if !ok || err != nil {
		t.Fatalf("%s: sendStored: ok=%v err=%v (stored as %.80s)", k.GVK, ok, err, o.Data)
	}
	line, err := bufio.NewReader(bytes.NewReader(rec.Body.Bytes())).ReadBytes('\n')
	if err != nil || !bytes.Equal(line, rec.Body.Bytes()) {
		t.Fatalf("%s: not one line: %q", k.GVK, rec.Body.String())
	}
	var got struct {
		Type   string         `json:"type"`
		Object map[string]any `json:"object"`
	}
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%s: %v: %s", k.GVK, err, line)
	}
	dec, err := k.Decode(o)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(dec)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if got.Type != "ADDED" || !reflect.DeepEqual(got.Object, want) {
		t.Fatalf("%s: stored event differs from the decoded object:\n got %s\nwant %s", k.GVK, line, raw)
	}
}
