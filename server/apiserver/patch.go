package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"strings"
	"sync/atomic"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// The cost of a patch is bounded before and while it is applied (issue 15),
// as kube-apiserver's patch handler bounds it, and further where that one
// is not:
//
//   - the body: MaxBodyBytes (413), as every request body;
//   - JSON patch: at most maxJSONPatchOperations operations (413), and the
//     copy operations may add at most JSONPatchMaxCopyBytes to the
//     document (json-patch's AccumulatedCopySizeLimit, 422 — kube-apiserver
//     sets the same library limit from the same setting). Every other
//     operation adds at most what the patch itself holds, so the document
//     a JSON patch builds is bounded by the object, the body and that
//     limit, and so is the work of any one operation;
//   - strategic merge patch: merging a list is quadratic in its length in
//     the strategicpatch library (each patch item is looked up by a linear
//     scan of the original list, and the merged list is sorted with linear
//     index lookups), so a 350 kB patch of a 20,000-item list took 106 s of
//     CPU. The lists a patch touches are measured first, and a patch whose
//     merges would exceed maxStrategicMergeWork is refused (413) before
//     any is merged;
//   - the result: a patched object larger than the larger of MaxBodyBytes
//     and the object before the patch is refused (413): a patch cannot make
//     an object grow beyond what a create or an update could have sent.
//
// JSON merge patches (RFC 7386) cost time linear in the object and the
// patch, which the body and result bounds cover.

// maxJSONPatchOperations is kube-apiserver's limit on the operations of
// one JSON patch.
const maxJSONPatchOperations = 10000

// maxStrategicMergeWork bounds the list merging of one strategic merge
// patch, in the units of smpWork: at most about a second and a half of
// CPU here (0.2–0.7 ns a unit, measured), a merged list of some 3,800
// items in all. Lists of hundreds of items cost a small fraction of it.
const maxStrategicMergeWork = 2_000_000_000

// The limit holds wherever this package's patches are applied, servers or
// not; New lowers it when configured lower.
func init() { setJSONPatchCopyLimit(DefaultJSONPatchMaxCopyBytes) }

// setJSONPatchCopyLimit lowers json-patch's process-wide limit on the bytes
// copy operations may add, as kube-apiserver does (never raising one set
// lower by another server in the process).
func setJSONPatchCopyLimit(limit int64) {
	for limit > 0 {
		cur := atomic.LoadInt64(&jsonpatch.AccumulatedCopySizeLimit)
		if cur > 0 && cur <= limit {
			return
		}
		if atomic.CompareAndSwapInt64(&jsonpatch.AccumulatedCopySizeLimit, cur, limit) {
			return
		}
	}
}

// patcher applies one request's patch, within the bounds above.
type patcher struct {
	pt        types.PatchType
	body      []byte
	schemaObj runtime.Object
	// maxResult is the size a patched object may reach, at least.
	maxResult int64
}

// newPatcher checks the patch document of the given type: 415 for an
// unsupported type, 400 for one that is not well-formed, 413 for a JSON
// patch with too many operations.
func (s *APIServer) newPatcher(req *request, contentType string, body []byte, schemaObj runtime.Object) (*patcher, error) {
	// Applies never get here: handlePatch and handleScalePatch serve them.
	pt := types.PatchType(contentType)
	p, err := checkPatch(pt, body)
	if err == nil && pt == types.StrategicMergePatchType && req.kind.Custom() {
		// As kube-apiserver: custom resources have no patch strategy.
		err = errUnknownPatchType
	}
	if errors.Is(err, errUnknownPatchType) {
		return nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", req.kind.GroupResource(), req.info.Name,
			"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json", 0, false)
	}
	if err != nil {
		return nil, err
	}
	p.schemaObj, p.maxResult = schemaObj, s.cfg.MaxBodyBytes
	return p, nil
}

var errUnknownPatchType = errors.New("unknown patch type")

// checkPatch checks a patch document of type pt before it is applied.
func checkPatch(pt types.PatchType, body []byte) (*patcher, error) {
	switch pt {
	case types.JSONPatchType:
		var ops []map[string]json.RawMessage
		if err := json.Unmarshal(body, &ops); err != nil {
			return nil, badRequest("the JSON patch is not a JSON array of operations: %v", err)
		}
		if len(ops) > maxJSONPatchOperations {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("The allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOperations, len(ops)))
		}
		for i, op := range ops {
			if err := checkJSONPatchOp(op); err != nil {
				return nil, unprocessable(fmt.Errorf("operation %d: %w", i, err))
			}
		}
	case types.MergePatchType, types.StrategicMergePatchType:
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, badRequest("error decoding patch: %v", err)
		}
	default:
		return nil, errUnknownPatchType
	}
	return &patcher{pt: pt, body: body}, nil
}

// checkJSONPatchOp checks the members of one JSON patch operation as RFC
// 6902 has them, before json-patch applies it: the library dereferences
// a missing or null value of an operation on the whole document
// (`[{"op":"replace","path":""}]` panicked).
func checkJSONPatchOp(op map[string]json.RawMessage) error {
	str := func(name string) (string, error) {
		raw, ok := op[name]
		if !ok {
			return "", fmt.Errorf("missing %q", name)
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", fmt.Errorf("%q is not a string", name)
		}
		return v, nil
	}
	kind, err := str("op")
	if err != nil {
		return err
	}
	path, err := str("path")
	if err != nil {
		return err
	}
	switch kind {
	case "add", "replace", "test":
		v, ok := op["value"]
		if !ok {
			return fmt.Errorf("%s: missing \"value\"", kind)
		}
		if path == "" {
			if t := bytes.TrimSpace(v); len(t) == 0 || (t[0] != '{' && t[0] != '[') {
				return fmt.Errorf("%s of the whole document: the value must be an object", kind)
			}
		}
	case "remove":
	case "move", "copy":
		if _, err := str("from"); err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	default:
		return fmt.Errorf("unknown operation %q", kind)
	}
	return nil
}

// unprocessable answers a patch that does not apply: 422 Invalid, as
// kube-apiserver, with the library's message (kube-apiserver's message is
// a generic one, the library's only in the details).
func unprocessable(err error) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusUnprocessableEntity,
		Reason:  metav1.StatusReasonInvalid,
		Message: "the patch does not apply: " + err.Error(),
	}}
}

// apply applies the patch to the JSON of an object.
func (p *patcher) apply(orig []byte) ([]byte, error) {
	var (
		out []byte
		err error
	)
	switch p.pt {
	case types.JSONPatchType:
		ops, derr := jsonpatch.DecodePatch(p.body)
		if derr != nil {
			return nil, badRequest("%v", derr)
		}
		if out, err = ops.Apply(orig); err != nil {
			return nil, unprocessable(err)
		}
	case types.MergePatchType:
		if out, err = jsonpatch.MergePatch(orig, p.body); err != nil {
			return nil, unprocessable(err)
		}
	default:
		if out, err = p.strategicMerge(orig); err != nil {
			return nil, err
		}
	}
	if limit := max(p.maxResult, int64(len(orig))); int64(len(out)) > limit {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf(
			"the patched object would be %d bytes, larger than the object (%d bytes) and than the limit of %d", len(out), len(orig), p.maxResult))
	}
	return out, nil
}

// strategicMerge applies a strategic merge patch, once its list merging is
// known to be within maxStrategicMergeWork. It is
// strategicpatch.StrategicMergePatch with the measure in between.
func (p *patcher) strategicMerge(orig []byte) ([]byte, error) {
	meta, err := strategicpatch.NewPatchMetaFromStruct(p.schemaObj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	var origMap, patchMap map[string]any
	if err := utiljson.Unmarshal(orig, &origMap); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if err := utiljson.Unmarshal(p.body, &patchMap); err != nil {
		return nil, badRequest("error decoding patch: %v", err)
	}
	w, err := smpWork(origMap, patchMap, meta, maxStrategicMergeWork)
	if err != nil {
		return nil, unprocessable(err)
	}
	if w > maxStrategicMergeWork {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf(
			"the strategic merge patch would merge lists too long for one patch (work %d, limit %d): merge fewer items at a time, or use a JSON merge patch or a JSON patch", w, maxStrategicMergeWork))
	}
	merged, err := strategicpatch.StrategicMergeMapPatchUsingLookupPatchMeta(origMap, patchMap, meta)
	if err != nil {
		return nil, unprocessable(err)
	}
	out, err := json.Marshal(merged)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return out, nil
}

// Strategic merge patch directives (k8s.io/apimachinery strategicpatch).
const (
	smpSetElementOrder     = "$setElementOrder/"
	smpDeleteFromPrimitive = "$deleteFromPrimitiveList/"
	smpRetainKeys          = "$retainKeys"
)

// smpWork measures the list merging a strategic merge patch of orig costs
// the strategicpatch library: for each merged list, n²·log₂²n with n its
// items in the object, the patch and the patch's order directive (the
// merged list is sorted stably, n·log₂²n comparisons, each with linear
// lookups); a list that is replaced costs its length. It walks the patch once, and the
// object only where the patch leads, pairing the items of merged lists by
// their merge key as the library does, so its own cost is linear. It stops
// counting past limit.
//
// It also refuses what the library would crash on rather than refuse: a
// merge key, an item of a list of scalars or of a $setElementOrder,
// $deleteFromPrimitiveList or $retainKeys list that is an object or a list
// (the library compares such values with == and uses them as map keys:
// `{"spec":{"containers":[{"name":{}}]}}` panicked), and an order or
// deletion directive for a list that is not merged.
func smpWork(orig, patch map[string]any, meta strategicpatch.LookupPatchMeta, limit int64) (int64, error) {
	w := &smpWalker{limit: limit}
	w.walk(orig, []map[string]any{patch}, meta)
	return w.work, w.err
}

type smpWalker struct {
	work, limit int64
	err         error
}

// scalar reports whether v is a JSON scalar (comparable, hashable).
func scalar(v any) bool {
	_, ok := hashable(v)
	return ok
}

// bad records the first reason the patch is refused.
func (w *smpWalker) bad(format string, args ...any) {
	if w.err == nil {
		w.err = fmt.Errorf(format, args...)
	}
	w.work = w.limit + 1 // stop walking
}

func (w *smpWalker) add(n int64) {
	w.work += n
	if w.work < 0 { // overflow
		w.work = w.limit + 1
	}
}

// smpField is what the patches of one map hold under one key.
type smpField struct {
	patches []any   // values under the key
	order   int     // items of $setElementOrder/key lists
	deletes int     // items of $deleteFromPrimitiveList/key lists
	items   [][]any // those lists
}

// walk measures the merge of the maps patches (one, or several list items
// with the same merge key) into orig (nil when absent), at schema meta
// (nil: unknown, every list counts as merged).
func (w *smpWalker) walk(orig map[string]any, patches []map[string]any, meta strategicpatch.LookupPatchMeta) {
	if w.work > w.limit || len(patches) == 0 {
		return
	}
	fields := map[string]*smpField{}
	field := func(k string) *smpField {
		f := fields[k]
		if f == nil {
			f = &smpField{}
			fields[k] = f
		}
		return f
	}
	retain := 0
	for _, p := range patches {
		w.add(int64(len(p)))
		for k, v := range p {
			switch {
			case strings.HasPrefix(k, smpSetElementOrder):
				if l, ok := v.([]any); ok {
					f := field(strings.TrimPrefix(k, smpSetElementOrder))
					f.order += len(l)
					f.items = append(f.items, l)
				}
			case strings.HasPrefix(k, smpDeleteFromPrimitive):
				if l, ok := v.([]any); ok {
					f := field(strings.TrimPrefix(k, smpDeleteFromPrimitive))
					f.deletes += len(l)
					f.items = append(f.items, l)
				}
			case k == smpRetainKeys:
				if l, ok := v.([]any); ok {
					retain += len(l)
					for _, x := range l {
						if !scalar(x) {
							w.bad("%s: every item must be a field name", smpRetainKeys)
							return
						}
					}
				}
			case strings.HasPrefix(k, "$"):
			default:
				f := field(k)
				f.patches = append(f.patches, v)
			}
		}
	}
	// $retainKeys checks every key of the object against its list.
	w.add(int64(retain) * int64(len(orig)+1))
	for k, f := range fields {
		if w.work > w.limit {
			return
		}
		w.field(orig[k], k, f, meta)
	}
}

// field measures the merge of the patches' values under key k into the
// object's value ov.
func (w *smpWalker) field(ov any, k string, f *smpField, meta strategicpatch.LookupPatchMeta) {
	var (
		patchItems int64
		patchLists [][]any
		patchMaps  []map[string]any
	)
	for _, v := range f.patches {
		switch v := v.(type) {
		case []any:
			patchLists = append(patchLists, v)
			patchItems += int64(len(v))
		case map[string]any:
			patchMaps = append(patchMaps, v)
		}
	}
	if len(patchMaps) > 0 {
		om, _ := ov.(map[string]any)
		var sub strategicpatch.LookupPatchMeta
		if meta != nil {
			if s, _, err := meta.LookupPatchMetadataForStruct(k); err == nil {
				sub = s
			}
		}
		w.walk(om, patchMaps, sub)
	}
	if len(patchLists) == 0 && f.order == 0 && f.deletes == 0 {
		return
	}
	merge, mergeKey, known := true, "", false
	var sub strategicpatch.LookupPatchMeta
	if meta != nil {
		if s, pm, err := meta.LookupPatchMetadataForSlice(k); err == nil {
			sub, merge, mergeKey, known = s, false, pm.GetPatchMergeKey(), true
			for _, st := range pm.GetPatchStrategies() {
				if st == "merge" {
					merge = true
				}
			}
		}
	}
	if known {
		if !merge && len(f.items) > 0 {
			w.bad("%s: order and deletion directives apply to merged lists only", k)
			return
		}
		if merge {
			for _, l := range append(f.items, patchLists...) {
				for _, x := range l {
					if !w.mergeItemOK(k, x, mergeKey) {
						return
					}
				}
			}
		}
	}
	ol, _ := ov.([]any)
	if !merge && f.order == 0 {
		w.add(int64(len(ol)) + patchItems + int64(f.deletes))
		return
	}
	n := int64(len(ol)) + patchItems + int64(f.order) + int64(f.deletes)
	lg := int64(bits.Len64(uint64(n) + 1))
	w.add(n * n * lg * lg)
	if w.work > w.limit || mergeKey == "" {
		return
	}
	// The items of a merged list of maps merge, in turn, with the item of
	// the object that has the same merge key (the first, as the library).
	byKey := map[any]map[string]any{}
	for _, v := range ol {
		if m, ok := v.(map[string]any); ok {
			if kv, ok := hashable(m[mergeKey]); ok {
				if _, dup := byKey[kv]; !dup {
					byKey[kv] = m
				}
			}
		}
	}
	groups := map[any][]map[string]any{}
	var keys []any
	for _, l := range patchLists {
		for _, v := range l {
			m, ok := v.(map[string]any)
			if !ok {
				continue
			}
			kv, ok := hashable(m[mergeKey])
			if !ok {
				// Without a usable merge key the library fails the
				// patch; with one of another type it appends the item.
				w.walk(nil, []map[string]any{m}, sub)
				continue
			}
			if _, seen := groups[kv]; !seen {
				keys = append(keys, kv)
			}
			groups[kv] = append(groups[kv], m)
		}
	}
	for _, kv := range keys {
		if w.work > w.limit {
			return
		}
		w.walk(byKey[kv], groups[kv], sub)
	}
}

// mergeItemOK checks an item of the merged list k (or of a directive for
// it): a scalar in a list of scalars; in a list of objects, an object
// whose merge key, if any, is a scalar (directives like {"$patch":
// "replace"} have none).
func (w *smpWalker) mergeItemOK(k string, x any, mergeKey string) bool {
	if mergeKey == "" {
		if !scalar(x) {
			w.bad("%s: the items of a list of scalars must be scalars", k)
			return false
		}
		return true
	}
	if m, ok := x.(map[string]any); ok {
		if v, ok := m[mergeKey]; ok && !scalar(v) {
			w.bad("%s: the merge key %q of an item must be a string or a number", k, mergeKey)
			return false
		}
	}
	return true
}

// hashable returns a JSON scalar usable as a map key.
func hashable(v any) (any, bool) {
	switch v.(type) {
	case string, bool, int64, float64, json.Number, nil:
		return v, true
	}
	return nil, false
}
