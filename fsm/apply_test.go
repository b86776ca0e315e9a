package fsm_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
)

func TestCreate(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	k := cmKey("default", "a")
	obj := cmJSON("default", "a", "v1")

	res := h.mutate(createM(k, "uid-a", obj))
	wantOK(t, res)
	if len(res.Objects) != 1 {
		t.Fatalf("create returned %d objects, want 1", len(res.Objects))
	}
	want := objRecord{ID: k.ID(), Key: k, Namespace: "default", UID: "uid-a", CreateIndex: 1, ModifyIndex: 1, Data: obj}
	if got := record(res.Objects[0]); got != want {
		t.Fatalf("result object %+v, want %+v", got, want)
	}
	snap := h.F.Read()
	if got := snap.Get(k); got == nil || record(got) != want {
		t.Fatalf("Get = %+v, want %+v", got, want)
	}
	if got := snap.GetByUID("uid-a"); got == nil || got.Key != k {
		t.Fatalf("GetByUID = %v, want %s", got, k)
	}
	if snap.Index() != 1 || h.F.Index() != 1 {
		t.Fatalf("index %d/%d, want 1", snap.Index(), h.F.Index())
	}
	w, err := h.F.Watch(0)
	if err != nil {
		t.Fatalf("Watch(0): %v", err)
	}
	evs := next(t, w)
	sameLines(t, "events", eventLines(evs), []string{"ADDED 1 configmaps/default/a uid=uid-a c=1 m=1 " + obj})
	if evs[0].Prev != nil {
		t.Fatalf("ADDED event has Prev %v", evs[0].Prev)
	}
}

func TestCreateClusterScoped(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	k := state.Key{Resource: "nodes", Name: "n1"}
	wantOK(t, h.mutate(createM(k, "uid-n1", `{"kind":"Node"}`)))
	o := h.F.Read().Get(k)
	if o == nil || o.Namespace != "" || o.Key != k {
		t.Fatalf("Get(%s) = %+v", k, o)
	}
}

func TestCreateAlreadyExists(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	k := cmKey("default", "a")
	wantOK(t, h.mutate(createM(k, "uid-a", cmJSON("default", "a", "v1"))))
	_, before := dump(h.F.Read())

	// Same key, another UID; then same key, same UID; then same key, no UID.
	for i, uid := range []string{"uid-b", "uid-a", ""} {
		res := h.mutate(createM(k, uid, cmJSON("default", "a", "v2")))
		wantErr(t, res, fsm.ReasonAlreadyExists, k, 0)
		idx, after := dump(h.F.Read())
		if idx != uint64(i+2) {
			t.Fatalf("refused create did not advance the index: %d, want %d", idx, i+2)
		}
		if len(after) != 1 || after[0] != before[0] {
			t.Fatalf("refused create changed the state: %+v", after)
		}
	}
	if h.F.Read().GetByUID("uid-b") != nil {
		t.Fatalf("refused create indexed its UID")
	}
	assertNoEventsAfter(t, h, 1)
}

func TestCreateReusedUID(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	a, b := cmKey("default", "a"), cmKey("other", "b")
	wantOK(t, h.mutate(createM(a, "uid-1", cmJSON("default", "a", "v"))))

	wantErr(t, h.mutate(createM(b, "uid-1", cmJSON("other", "b", "v"))), fsm.ReasonAlreadyExists, b, 0)
	if h.F.Read().Get(b) != nil {
		t.Fatalf("create with a reused UID stored the object")
	}
	if o := h.F.Read().GetByUID("uid-1"); o == nil || o.Key != a {
		t.Fatalf("GetByUID(uid-1) = %v, want %s", o, a)
	}
	// The UID is free again once its object is deleted.
	wantOK(t, h.mutate(deleteM(a, nil)))
	wantOK(t, h.mutate(createM(b, "uid-1", cmJSON("other", "b", "v"))))
	if o := h.F.Read().GetByUID("uid-1"); o == nil || o.Key != b {
		t.Fatalf("GetByUID(uid-1) = %v, want %s", o, b)
	}
}

func TestCreateWithoutUID(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	wantOK(t, h.mutate(createM(cmKey("ns", "a"), "", `{}`)))
	wantOK(t, h.mutate(createM(cmKey("ns", "b"), "", `{}`)))
	snap := h.F.Read()
	if n := snap.Count("configmaps", "ns"); n != 2 {
		t.Fatalf("Count = %d, want 2", n)
	}
	if o := snap.GetByUID(""); o != nil {
		t.Fatalf("GetByUID(\"\") = %v, want nil", o)
	}
}

// TestPreconditions runs update, status update and delete against an object
// created at index 1 (uid-a) and updated at index 2, so that 2 is its current
// resourceVersion and 1 a stale one.
func TestPreconditions(t *testing.T) {
	k := cmKey("default", "a")
	missing := cmKey("default", "missing")
	cases := []struct {
		name   string
		key    state.Key
		pre    *fsm.Preconditions
		reason fsm.Reason // "" for success
	}{
		{"none", k, nil, ""},
		{"empty", k, &fsm.Preconditions{}, ""},
		{"uid", k, &fsm.Preconditions{UID: "uid-a"}, ""},
		{"rv", k, &fsm.Preconditions{ResourceVersion: 2}, ""},
		{"uid and rv", k, &fsm.Preconditions{UID: "uid-a", ResourceVersion: 2}, ""},
		{"wrong uid", k, &fsm.Preconditions{UID: "uid-other"}, fsm.ReasonConflict},
		{"stale rv", k, &fsm.Preconditions{ResourceVersion: 1}, fsm.ReasonConflict},
		{"future rv", k, &fsm.Preconditions{ResourceVersion: 3}, fsm.ReasonConflict},
		{"wrong uid, right rv", k, &fsm.Preconditions{UID: "uid-other", ResourceVersion: 2}, fsm.ReasonConflict},
		{"right uid, stale rv", k, &fsm.Preconditions{UID: "uid-a", ResourceVersion: 1}, fsm.ReasonConflict},
		{"missing", missing, nil, fsm.ReasonNotFound},
		{"missing with preconditions", missing, &fsm.Preconditions{UID: "uid-a", ResourceVersion: 2}, fsm.ReasonNotFound},
	}
	ops := []struct {
		op  fsm.Op
		mut func(k state.Key, pre *fsm.Preconditions) fsm.Mutation
	}{
		{fsm.OpUpdate, func(k state.Key, pre *fsm.Preconditions) fsm.Mutation {
			return updateM(k, cmJSON("default", "a", "v3"), pre)
		}},
		{fsm.OpUpdateStatus, func(k state.Key, pre *fsm.Preconditions) fsm.Mutation {
			return statusM(k, `{"phase":"Done"}`, pre)
		}},
		{fsm.OpDelete, deleteM},
	}
	for _, op := range ops {
		for _, tc := range cases {
			t.Run(op.op.String()+"/"+tc.name, func(t *testing.T) {
				h := newHarness(t, fsm.Options{})
				wantOK(t, h.mutate(createM(k, "uid-a", cmJSON("default", "a", "v1"))))
				wantOK(t, h.mutate(updateM(k, cmJSON("default", "a", "v2"), nil)))
				prev := h.F.Read().Get(k)

				res := h.mutate(op.mut(tc.key, tc.pre))
				if h.F.Index() != 3 {
					t.Fatalf("index %d after the mutation, want 3", h.F.Index())
				}
				if tc.reason != "" {
					wantErr(t, res, tc.reason, tc.key, 0)
					if res.Err.Message == "" {
						t.Errorf("error without a message")
					}
					if got := h.F.Read().Get(k); got != prev {
						t.Fatalf("refused %s changed the object: %+v", op.op, got)
					}
					assertNoEventsAfter(t, h, 2)
					return
				}
				wantOK(t, res)
				if len(res.Objects) != 1 {
					t.Fatalf("%d result objects, want 1", len(res.Objects))
				}
				got := res.Objects[0]
				if got.Key != k || got.UID != "uid-a" || got.CreateIndex != 1 || got.ModifyIndex != 3 {
					t.Fatalf("result object %+v, want key %s uid-a created 1 modified 3", got, k)
				}
				w, err := h.F.Watch(2)
				if err != nil {
					t.Fatalf("Watch(2): %v", err)
				}
				evs := next(t, w)
				if len(evs) != 1 || evs[0].Index != 3 || evs[0].Prev != prev || evs[0].Object.ModifyIndex != 3 {
					t.Fatalf("events %q, want one at 3 with the previous object", eventLines(evs))
				}
				stored := h.F.Read().Get(k)
				switch op.op {
				case fsm.OpDelete:
					if stored != nil {
						t.Fatalf("deleted object still stored: %+v", stored)
					}
					if h.F.Read().GetByUID("uid-a") != nil {
						t.Fatalf("deleted object still indexed by UID")
					}
					if string(got.Data) != string(prev.Data) {
						t.Fatalf("delete result data %s, want the last data %s", got.Data, prev.Data)
					}
					if evs[0].Type != fsm.Deleted {
						t.Fatalf("event type %s, want DELETED", evs[0].Type)
					}
				default:
					if stored != got {
						t.Fatalf("stored %+v, result %+v", stored, got)
					}
					if evs[0].Type != fsm.Modified || evs[0].Object != stored {
						t.Fatalf("event %s, want MODIFIED of the stored object", eventLine(evs[0]))
					}
				}
				// The previous object, shared with readers, is untouched.
				if prev.ModifyIndex != 2 || string(prev.Data) != cmJSON("default", "a", "v2") {
					t.Fatalf("previous object was modified in place: %+v", prev)
				}
			})
		}
	}
}

func TestUpdateKeepsCreateIndexAndUID(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	k := cmKey("default", "a")
	wantOK(t, h.mutate(createM(k, "uid-a", cmJSON("default", "a", "v0"))))
	for i := 1; i <= 5; i++ {
		h.skip() // indexes without a command in between
		obj := cmJSON("default", "a", fmt.Sprintf("v%d", i))
		m := updateM(k, obj, &fsm.Preconditions{ResourceVersion: h.F.Read().Get(k).ModifyIndex})
		m.UID = "ignored-on-update"
		res := h.mutate(m)
		wantOK(t, res)
		o := h.F.Read().Get(k)
		if o.CreateIndex != 1 || o.ModifyIndex != h.index || o.UID != "uid-a" || string(o.Data) != obj {
			t.Fatalf("after update at %d: %+v", h.index, o)
		}
		if h.F.Read().GetByUID("ignored-on-update") != nil {
			t.Fatalf("update changed the UID index")
		}
	}
}

func TestUpdateStatus(t *testing.T) {
	k := state.Key{Resource: "pods", Namespace: "default", Name: "p"}
	const pod = `{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"a":"<b>"},"name":"p"},"spec":{"containers":[{"image":"busybox","name":"c"}],"nodeName":"n1"},"status":{"phase":"Pending"}}`
	cases := []struct {
		name   string
		obj    string
		status string
		want   string // the status field after the update; "" for absent
	}{
		{"replace", pod, `{"phase":"Running","podIP":"10.0.0.1"}`, `{"phase":"Running","podIP":"10.0.0.1"}`},
		{"add", `{"kind":"Pod","spec":{"x":1}}`, `{"phase":"Running"}`, `{"phase":"Running"}`},
		{"remove", pod, `null`, ""},
		{"remove absent", `{"kind":"Pod","spec":{"x":1}}`, `null`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, fsm.Options{})
			wantOK(t, h.mutate(createM(k, "uid-p", tc.obj)))
			h.skip()
			res := h.mutate(statusM(k, tc.status, &fsm.Preconditions{UID: "uid-p", ResourceVersion: 1}))
			wantOK(t, res)
			o := h.F.Read().Get(k)
			if o.CreateIndex != 1 || o.ModifyIndex != 3 || o.UID != "uid-p" {
				t.Fatalf("after status update: %+v", o)
			}
			var before, after map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tc.obj), &before); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(o.Data, &after); err != nil {
				t.Fatalf("stored object is not a JSON object: %v: %s", err, o.Data)
			}
			st, has := after["status"]
			if tc.want == "" && has {
				t.Fatalf("status = %s, want none", st)
			}
			if tc.want != "" && string(st) != tc.want {
				t.Fatalf("status = %s, want %s", st, tc.want)
			}
			delete(before, "status")
			delete(after, "status")
			if len(before) != len(after) {
				t.Fatalf("fields %v, want %v", after, before)
			}
			for f, v := range before {
				if !sameJSON(t, after[f], v) {
					t.Errorf("field %q = %s, want it kept as %s", f, after[f], v)
				}
			}
		})
	}
}

// sameJSON reports whether a and b encode the same value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func TestInvalidObject(t *testing.T) {
	k := cmKey("default", "a")
	bad := []string{"", "null", "[]", `[{"a":1}]`, "42", `"a string"`, "true"}
	for _, obj := range bad {
		t.Run(fmt.Sprintf("create %q", obj), func(t *testing.T) {
			h := newHarness(t, fsm.Options{})
			wantErr(t, h.mutate(createM(k, "uid", obj)), fsm.ReasonInvalid, k, 0)
			if idx, objs := dump(h.F.Read()); idx != 1 || len(objs) != 0 {
				t.Fatalf("after refused create: index %d objects %v", idx, objs)
			}
		})
		t.Run(fmt.Sprintf("update %q", obj), func(t *testing.T) {
			h := newHarness(t, fsm.Options{})
			wantOK(t, h.mutate(createM(k, "uid", `{"a":1}`)))
			wantErr(t, h.mutate(updateM(k, obj, nil)), fsm.ReasonInvalid, k, 0)
			if o := h.F.Read().Get(k); string(o.Data) != `{"a":1}` || o.ModifyIndex != 1 {
				t.Fatalf("refused update changed the object: %+v", o)
			}
			// A status update must never fail on what an update stored.
			wantOK(t, h.mutate(statusM(k, `{"ok":true}`, nil)))
		})
	}
	t.Run("status without value", func(t *testing.T) {
		h := newHarness(t, fsm.Options{})
		wantOK(t, h.mutate(createM(k, "uid", `{"a":1}`)))
		wantErr(t, h.mutate(statusM(k, "", nil)), fsm.ReasonInvalid, k, 0)
	})
	t.Run("unknown op", func(t *testing.T) {
		h := newHarness(t, fsm.Options{})
		wantOK(t, h.mutate(createM(k, "uid", `{"a":1}`)))
		wantErr(t, h.mutate(fsm.Mutation{Op: 42, Key: k, Object: []byte(`{}`)}), fsm.ReasonInvalid, k, 0)
		wantErr(t, h.mutate(fsm.Mutation{Op: 0, Key: k, Object: []byte(`{}`)}), fsm.ReasonInvalid, k, 0)
	})
	t.Run("encode refuses bad JSON", func(t *testing.T) {
		if _, err := fsm.EncodeMutation(createM(k, "uid", `{"a":`)); err == nil {
			t.Fatalf("EncodeMutation accepted an object that is not JSON")
		}
	})
}

// TestInvalidKey: NUL separates the parts of a key in the store, so a key
// part holding one could alias another key; empty resources and names
// cannot be listed or addressed.
func TestInvalidKey(t *testing.T) {
	keys := []state.Key{
		{Resource: "", Namespace: "ns", Name: "a"},
		{Resource: "configmaps", Namespace: "ns", Name: ""},
		{Resource: "config\x00maps", Namespace: "ns", Name: "a"},
		{Resource: "configmaps", Namespace: "n\x00s", Name: "a"},
		{Resource: "configmaps", Namespace: "ns", Name: "a\x00"},
	}
	for _, k := range keys {
		t.Run(fmt.Sprintf("%q", k.ID()), func(t *testing.T) {
			h := newHarness(t, fsm.Options{})
			for _, m := range []fsm.Mutation{
				createM(k, "uid", `{}`),
				updateM(k, `{}`, nil),
				statusM(k, `{}`, nil),
				deleteM(k, nil),
			} {
				wantErr(t, h.mutate(m), fsm.ReasonInvalid, k, 0)
			}
			if _, objs := dump(h.F.Read()); len(objs) != 0 {
				t.Fatalf("stored %v", objs)
			}
		})
	}
	t.Run("aliasing", func(t *testing.T) {
		h := newHarness(t, fsm.Options{})
		a := state.Key{Resource: "configmaps", Namespace: "x\x00y", Name: "z"}
		b := state.Key{Resource: "configmaps", Namespace: "x", Name: "y\x00z"}
		if a.ID() != b.ID() {
			t.Skip("keys do not alias")
		}
		wantErr(t, h.mutate(createM(a, "uid-a", `{}`)), fsm.ReasonInvalid, a, 0)
		wantErr(t, h.mutate(createM(b, "uid-b", `{}`)), fsm.ReasonInvalid, b, 0)
		if n := h.F.Read().Count("configmaps", "x"); n != 0 {
			t.Fatalf("namespace x lists %d objects", n)
		}
	})
	t.Run("uid with NUL", func(t *testing.T) {
		h := newHarness(t, fsm.Options{})
		k := cmKey("ns", "a")
		wantErr(t, h.mutate(createM(k, "u\x00v", `{}`)), fsm.ReasonInvalid, k, 0)
	})
}

func TestBatch(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	x, a, b := cmKey("ns", "x"), cmKey("ns", "a"), cmKey("other", "b")
	wantOK(t, h.mutate(createM(x, "uid-x", cmJSON("ns", "x", "v1"))))

	res := h.batch(
		createM(a, "uid-a", cmJSON("ns", "a", "v1")),
		createM(b, "uid-b", cmJSON("other", "b", "v1")),
		// Later mutations see earlier ones: a's resourceVersion is this index.
		updateM(a, cmJSON("ns", "a", "v2"), &fsm.Preconditions{UID: "uid-a", ResourceVersion: 2}),
		statusM(b, `{"ok":true}`, nil),
		deleteM(x, &fsm.Preconditions{UID: "uid-x", ResourceVersion: 1}),
	)
	wantOK(t, res)
	if res.Index != 2 || len(res.Objects) != 5 {
		t.Fatalf("batch result index %d with %d objects", res.Index, len(res.Objects))
	}
	for i, o := range res.Objects {
		if o.ModifyIndex != 2 {
			t.Errorf("result object %d modified at %d, want 2", i, o.ModifyIndex)
		}
	}
	snap := h.F.Read()
	if o := snap.Get(a); o == nil || string(o.Data) != cmJSON("ns", "a", "v2") || o.CreateIndex != 2 {
		t.Fatalf("a = %+v", o)
	}
	if o := snap.Get(b); o == nil || !strings.Contains(string(o.Data), `"status":{"ok":true}`) {
		t.Fatalf("b = %+v", o)
	}
	if snap.Get(x) != nil {
		t.Fatalf("x not deleted")
	}
	w, err := h.F.Watch(1)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range next(t, w) {
		if ev.Index != 2 {
			t.Fatalf("batch event at %d, want 2", ev.Index)
		}
		types = append(types, fmt.Sprintf("%s %s", ev.Type, ev.Object.Key))
	}
	sameLines(t, "batch events", types, []string{
		"ADDED configmaps/ns/a", "ADDED configmaps/other/b", "MODIFIED configmaps/ns/a",
		"MODIFIED configmaps/other/b", "DELETED configmaps/ns/x",
	})
}

func TestBatchEmpty(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	res := h.batch()
	wantOK(t, res)
	if len(res.Objects) != 0 || h.F.Index() != 1 {
		t.Fatalf("empty batch: %+v, index %d", res, h.F.Index())
	}
}

// TestBatchAtomic: a batch with one refused mutation applies nothing, yet
// its index is applied, and the error names the failing position. x is
// created at 1 and updated at 2; the batch is at 3.
func TestBatchAtomic(t *testing.T) {
	x, y, z, w := cmKey("ns", "x"), cmKey("ns", "y"), cmKey("ns", "z"), cmKey("ns", "w")
	good := []fsm.Mutation{
		createM(y, "uid-y", cmJSON("ns", "y", "v1")),
		updateM(x, cmJSON("ns", "x", "v3"), &fsm.Preconditions{UID: "uid-x", ResourceVersion: 2}),
		statusM(x, `{"s":1}`, nil),
		createM(z, "uid-z", cmJSON("ns", "z", "v1")),
	}
	bad := []struct {
		name   string
		m      fsm.Mutation
		reason fsm.Reason
		key    state.Key
		// minPos: the mutation fails only after good[0] (create y) ran.
		minPos int
	}{
		{"exists", createM(x, "uid-new", `{}`), fsm.ReasonAlreadyExists, x, 0},
		{"uid reused", createM(w, "uid-x", `{}`), fsm.ReasonAlreadyExists, w, 0},
		{"uid reused within batch", createM(w, "uid-y", `{}`), fsm.ReasonAlreadyExists, w, 1},
		{"created within batch", createM(y, "uid-new", `{}`), fsm.ReasonAlreadyExists, y, 1},
		{"missing", deleteM(cmKey("ns", "missing"), nil), fsm.ReasonNotFound, cmKey("ns", "missing"), 0},
		{"stale rv", updateM(x, `{}`, &fsm.Preconditions{ResourceVersion: 1}), fsm.ReasonConflict, x, 0},
		{"wrong uid", deleteM(x, &fsm.Preconditions{UID: "uid-y"}), fsm.ReasonConflict, x, 0},
		{"invalid", updateM(x, `[]`, nil), fsm.ReasonInvalid, x, 0},
		{"invalid key", createM(cmKey("ns", ""), "", `{}`), fsm.ReasonInvalid, cmKey("ns", ""), 0},
	}
	for _, tc := range bad {
		for pos := tc.minPos; pos <= len(good); pos++ {
			t.Run(fmt.Sprintf("%s at %d", tc.name, pos), func(t *testing.T) {
				h := newHarness(t, fsm.Options{})
				wantOK(t, h.mutate(createM(x, "uid-x", cmJSON("ns", "x", "v1"))))
				wantOK(t, h.mutate(updateM(x, cmJSON("ns", "x", "v2"), nil)))
				_, before := dump(h.F.Read())
				changed := h.F.Changed()

				ms := append(append(append([]fsm.Mutation{}, good[:pos]...), tc.m), good[pos:]...)
				wantErr(t, h.batch(ms...), tc.reason, tc.key, pos)
				idx, after := dump(h.F.Read())
				if idx != 3 {
					t.Fatalf("index %d after a refused batch, want 3", idx)
				}
				if len(after) != len(before) || after[0] != before[0] {
					t.Fatalf("refused batch changed the state:\n%+v\nwant\n%+v", after, before)
				}
				for _, uid := range []string{"uid-y", "uid-z", "uid-new"} {
					if o := h.F.Read().GetByUID(uid); o != nil {
						t.Fatalf("refused batch left %s indexed: %+v", uid, o)
					}
				}
				if !closed(changed) {
					t.Fatalf("Changed() not closed after the refused batch advanced the index")
				}
				assertNoEventsAfter(t, h, 2)
			})
		}
	}
	// The same batch without the bad mutation applies in full.
	h := newHarness(t, fsm.Options{})
	wantOK(t, h.mutate(createM(x, "uid-x", cmJSON("ns", "x", "v1"))))
	wantOK(t, h.mutate(updateM(x, cmJSON("ns", "x", "v2"), nil)))
	if res := h.batch(good...); res.Err != nil || len(res.Objects) != len(good) {
		t.Fatalf("good batch: %+v", res)
	}
}

// assertNoEventsAfter checks that no event was recorded after index by
// applying one more mutation and seeing that it is the only event.
func assertNoEventsAfter(t *testing.T, h *harness, index uint64) {
	t.Helper()
	w, err := h.F.Watch(index)
	if err != nil {
		t.Fatalf("Watch(%d): %v", index, err)
	}
	probe := cmKey("probe", fmt.Sprintf("p%d", h.index+1))
	wantOK(t, h.mutate(createM(probe, "", `{}`)))
	evs := next(t, w)
	if len(evs) != 1 || evs[0].Object.Key != probe || evs[0].Index != h.index {
		t.Fatalf("events after %d: %q, want only the probe at %d", index, eventLines(evs), h.index)
	}
}

func TestApplyPanics(t *testing.T) {
	k := cmKey("ns", "a")
	cases := map[string][]byte{
		"empty":                {},
		"binary truncated":     formatV1(t, encodeMutation(t, createM(k, "", `{}`)))[:4],
		"binary trailing":      append(formatV1(t, encodeMutation(t, createM(k, "", `{}`))), 0),
		"framed type 0":        framed(0x00, `{}`),
		"framed type 255":      framed(0xff, `{}`),
		"framed binary junk":   framed(byte(fsm.MutationType), "\x01\xff"),
		"mutation not JSON":    append([]byte{byte(fsm.MutateType)}, `{"op":1,"key":`...),
		"mutation wrong shape": append([]byte{byte(fsm.MutateType)}, `[1,2]`...),
		"mutation no body":     {byte(fsm.MutateType)},
		"batch not JSON":       append([]byte{byte(fsm.BatchType)}, `{"m":[{"op":1}`...),
		"batch wrong shape":    append([]byte{byte(fsm.BatchType)}, `{"m":{"op":1}}`...),
	}
	for name, entry := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, fsm.Options{})
			wantOK(t, h.mutate(createM(cmKey("ns", "before"), "", `{}`)))
			v := mustPanic(t, func() { h.apply(entry) })
			if msg, ok := v.(string); !ok || !strings.Contains(msg, "index 2") {
				t.Fatalf("panic %v does not name the index", v)
			}
			// A recovered panic leaves the FSM usable (no write lock held).
			after := encodeMutation(t, createM(k, "", `{}`))
			done := make(chan *fsm.Result, 1)
			go func() {
				res, _ := h.F.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: after}).(*fsm.Result)
				done <- res
			}()
			select {
			case res := <-done:
				if res == nil || res.Err != nil || h.F.Read().Get(k) == nil {
					t.Fatalf("Apply after a recovered panic: %+v", res)
				}
			case <-time.After(waitLimit):
				t.Fatalf("Apply after a recovered panic did not return")
			}
		})
	}
}

func TestNonCommandEntriesIgnored(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	wantOK(t, h.mutate(createM(cmKey("ns", "a"), "", `{}`)))
	changed := h.F.Changed()
	for i, typ := range []raft.LogType{raft.LogConfiguration, raft.LogBarrier, raft.LogNoop, raft.LogAddPeerDeprecated, raft.LogRemovePeerDeprecated} {
		for _, data := range [][]byte{nil, {}, {255, 1, 2}, encodeMutation(t, createM(cmKey("ns", "b"), "", `{}`))} {
			if out := h.F.Apply(&raft.Log{Index: uint64(2 + i), Type: typ, Data: data}); out != nil {
				t.Fatalf("Apply(%s) = %v, want nil", typ, out)
			}
		}
	}
	if idx, objs := dump(h.F.Read()); idx != 1 || len(objs) != 1 {
		t.Fatalf("non-command entries changed the state: index %d, %d objects", idx, len(objs))
	}
	if closed(changed) {
		t.Fatalf("non-command entries closed Changed()")
	}
}

func TestApplyBatchIndependentEntries(t *testing.T) {
	f := fsm.New(fsm.Options{Logger: quietLogger()})
	k := cmKey("ns", "a")
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: encodeMutation(t, createM(k, "uid-a", `{"v":1}`))},
		{Index: 2, Type: raft.LogConfiguration, Data: []byte("conf")},
		{Index: 3, Type: raft.LogCommand, Data: encodeMutation(t, createM(k, "uid-b", `{"v":2}`))},
		{Index: 4, Type: raft.LogCommand, Data: encodeMutation(t, updateM(k, `{"v":3}`, &fsm.Preconditions{ResourceVersion: 1}))},
		{Index: 5, Type: raft.LogCommand, Data: encodeBatch(t, deleteM(k, nil), createM(k, "uid-c", `{"v":4}`))},
		{Index: 6, Type: raft.LogCommand, Data: encodeMutation(t, deleteM(cmKey("ns", "missing"), nil))},
	}
	out := f.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("%d responses for %d logs", len(out), len(logs))
	}
	if out[1] != nil {
		t.Fatalf("response to a configuration entry: %v", out[1])
	}
	wantOK(t, out[0].(*fsm.Result))
	wantErr(t, out[2].(*fsm.Result), fsm.ReasonAlreadyExists, k, 0)
	wantOK(t, out[3].(*fsm.Result))
	wantOK(t, out[4].(*fsm.Result))
	wantErr(t, out[5].(*fsm.Result), fsm.ReasonNotFound, cmKey("ns", "missing"), 0)
	for i, o := range out {
		if r, ok := o.(*fsm.Result); ok && r.Index != logs[i].Index {
			t.Fatalf("response %d has index %d, want %d", i, r.Index, logs[i].Index)
		}
	}
	o := f.Read().Get(k)
	if o == nil || o.UID != "uid-c" || o.CreateIndex != 5 || o.ModifyIndex != 5 || f.Index() != 6 {
		t.Fatalf("after ApplyBatch: %+v, index %d", o, f.Index())
	}
	w, err := f.Watch(0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range next(t, w) {
		got = append(got, fmt.Sprintf("%s %d %s", ev.Type, ev.Index, ev.Object.UID))
	}
	sameLines(t, "events", got, []string{"ADDED 1 uid-a", "MODIFIED 4 uid-a", "DELETED 5 uid-a", "ADDED 5 uid-c"})
}

// TestApplyDoesNotRetainEntry: Raft may reuse a log's buffer once Apply
// returns, so nothing stored may alias it.
func TestApplyDoesNotRetainEntry(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	k := cmKey("ns", "a")
	obj := cmJSON("ns", "a", "v")
	entry := encodeMutation(t, createM(k, "uid-a", obj))
	wantOK(t, h.apply(entry))
	status := encodeMutation(t, statusM(k, `{"x":1}`, nil))
	wantOK(t, h.apply(status))
	for i := range entry {
		entry[i] = 'X'
	}
	for i := range status {
		status[i] = 'X'
	}
	o := h.F.Read().Get(k)
	if o.Key != k || o.UID != "uid-a" || !strings.HasPrefix(string(o.Data), `{"apiVersion":"v1"`) || !strings.Contains(string(o.Data), `"status":{"x":1}`) {
		t.Fatalf("stored object changed with the entry buffers: %+v %s", o, o.Data)
	}
}

func TestChangedOnEveryAppliedCommand(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	k := cmKey("ns", "a")
	steps := []struct {
		name string
		m    fsm.Mutation
	}{
		{"create", createM(k, "uid-a", `{}`)},
		{"refused create", createM(k, "uid-a", `{}`)},
		{"update", updateM(k, `{"a":1}`, nil)},
		{"refused update", updateM(cmKey("ns", "missing"), `{}`, nil)},
	}
	for _, s := range steps {
		ch := h.F.Changed()
		if closed(ch) {
			t.Fatalf("%s: Changed() closed before the apply", s.name)
		}
		h.mutate(s.m)
		if !closed(ch) {
			t.Fatalf("%s: Changed() not closed after the index advanced to %d", s.name, h.F.Index())
		}
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[fsm.Op]string{fsm.OpCreate: "create", fsm.OpUpdate: "update", fsm.OpDelete: "delete", fsm.OpUpdateStatus: "status", 9: "op(9)"} {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", op, got, want)
		}
	}
	e := &fsm.Error{Reason: fsm.ReasonConflict, Key: cmKey("ns", "a"), Message: "m"}
	if got := e.Error(); got != "Conflict: configmaps/ns/a: m" {
		t.Errorf("Error() = %q", got)
	}
}

// TestResultSurvivesJSON: results cross the wire when a follower forwards
// a write, so they must decode to what the leader returned.
func TestResultSurvivesJSON(t *testing.T) {
	h := newHarness(t, fsm.Options{})
	for _, res := range []*fsm.Result{
		h.mutate(createM(cmKey("ns", "a"), "uid-a", `{"a":"<&>"}`)),
		h.batch(createM(cmKey("ns", "b"), "", `{}`), createM(cmKey("ns", "a"), "", `{}`)),
	} {
		b, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		var back fsm.Result
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.Index != res.Index || len(back.Objects) != len(res.Objects) || (res.Err == nil) != (back.Err == nil) {
			t.Fatalf("round trip: %+v, want %+v", back, res)
		}
		if res.Err != nil && *back.Err != *res.Err {
			t.Fatalf("error round trip: %+v, want %+v", back.Err, res.Err)
		}
		for i := range res.Objects {
			if record(back.Objects[i]) != record(res.Objects[i]) {
				t.Fatalf("object round trip: %+v, want %+v", back.Objects[i], res.Objects[i])
			}
		}
	}
}
