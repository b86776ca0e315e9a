package apiserver

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// handlePatch serves PATCH with JSON patch, merge patch and strategic
// merge patch, of an object or its status. The patch is applied to the
// current object and the result goes through the update path; a
// resourceVersion set by the patch is a precondition, otherwise conflicts
// are retried on the fresh object.
func (s *APIServer) handlePatch(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	ct := req.r.Header.Get("Content-Type")
	pt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		s.writeError(req.w, req.r, unsupportedMediaType(ct))
		return
	}
	switch types.PatchType(pt) {
	case types.JSONPatchType:
		if err := checkJSONPatchSize(body); err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
	case types.MergePatchType, types.StrategicMergePatchType:
	case types.ApplyYAMLPatchType, types.ApplyCBORPatchType:
		s.writeError(req.w, req.r, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", req.kind.GroupResource(), req.info.Name,
			"server-side apply is not supported yet: use client-side apply (kubectl apply without --server-side), or a strategic merge, merge or JSON patch", 0, false))
		return
	default:
		s.writeError(req.w, req.r, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", req.kind.GroupResource(), req.info.Name,
			"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json", 0, false))
		return
	}
	validation, err := fieldValidation(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	dry, err := dryRun(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	var warnings []string
	u := &update{
		kind:      req.kind,
		namespace: req.namespace(),
		name:      req.info.Name,
		status:    req.info.Subresource == "status",
		dry:       dry,
		tryUpdate: func(old runtime.Object) (runtime.Object, uint64, error) {
			orig, err := json.Marshal(old)
			if err != nil {
				return nil, 0, apierrors.NewInternalError(err)
			}
			patched, err := applyPatch(types.PatchType(pt), orig, body, req.kind.New())
			if err != nil {
				return nil, 0, err
			}
			obj, w, err := s.decode.decodeAs(runtime.ContentTypeJSON, validation, patched, req.kind)
			if err != nil {
				return nil, 0, err
			}
			warnings = w
			m, om := mustAccessor(obj), mustAccessor(old)
			if m.GetName() != om.GetName() {
				return nil, 0, badRequest("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), om.GetName())
			}
			if m.GetNamespace() != om.GetNamespace() {
				return nil, 0, badRequest("the namespace of the provided object does not match the namespace sent on the request")
			}
			var rv uint64
			if m.GetResourceVersion() != om.GetResourceVersion() {
				// The patch set resourceVersion: a precondition.
				if rv, err = parseRV(m.GetResourceVersion()); err != nil {
					return nil, 0, err
				}
				if rv == 0 {
					// The patch removed it: unconditional.
					m.SetResourceVersion(om.GetResourceVersion())
				}
			}
			return obj, rv, nil
		},
	}
	out, _, err := s.guaranteedUpdate(req.r.Context(), u)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	addWarnings(req.w, warnings)
	s.writeObject(req, http.StatusOK, out)
}

// maxJSONPatchOperations is kube-apiserver's limit on the operations of
// one JSON patch.
const maxJSONPatchOperations = 10000

// checkJSONPatchSize answers 413 for a JSON patch with too many operations
// (and 400 for one that is not a JSON array).
func checkJSONPatchSize(body []byte) error {
	var ops []json.RawMessage
	if err := json.Unmarshal(body, &ops); err != nil {
		return badRequest("the JSON patch is not a JSON array of operations: %v", err)
	}
	if len(ops) > maxJSONPatchOperations {
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("The allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOperations, len(ops)))
	}
	return nil
}

// applyPatch applies a patch document to the JSON of an object.
func applyPatch(pt types.PatchType, orig, patch []byte, schemaObj runtime.Object) ([]byte, error) {
	invalid := func(err error) error {
		return apierrors.NewInvalid(schema.GroupKind{}, "", field.ErrorList{field.Invalid(field.NewPath("patch"), string(patch), err.Error())})
	}
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		out, err := p.Apply(orig)
		if err != nil {
			return nil, invalid(err)
		}
		return out, nil
	case types.MergePatchType:
		if !json.Valid(patch) {
			return nil, badRequest("invalid JSON in merge patch")
		}
		out, err := jsonpatch.MergePatch(orig, patch)
		if err != nil {
			return nil, invalid(err)
		}
		return out, nil
	default:
		var pm map[string]any
		if err := json.Unmarshal(patch, &pm); err != nil {
			return nil, badRequest("%v", err)
		}
		out, err := strategicpatch.StrategicMergePatch(orig, patch, schemaObj)
		if err != nil {
			return nil, invalid(err)
		}
		return out, nil
	}
}
