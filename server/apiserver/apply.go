package apiserver

import (
	"context"
	"fmt"
	"mime"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/server/registry"
)

// patchTypeOf is the patch type a PATCH request's Content-Type names ("" if
// it names none).
func patchTypeOf(req *request) types.PatchType {
	pt, _, err := mime.ParseMediaType(req.r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return types.PatchType(pt)
}

// isApply reports whether a PATCH is a server-side apply.
func isApply(req *request) bool {
	pt := patchTypeOf(req)
	return pt == types.ApplyYAMLPatchType || pt == types.ApplyCBORPatchType
}

// handleApply serves a server-side apply (PATCH application/apply-patch+
// yaml) of an object or its status, as kube-apiserver's applyPatcher: the
// field manager merges the applied configuration into the live object (an
// empty one when it does not exist yet, which the apply then creates),
// records the fields as the manager's (operation Apply), and answers 409
// naming each field another manager owns unless force=true moves them. The
// result takes the update (or create) path: the kind's update rules,
// admission, validation, dryRun.
func (s *APIServer) handleApply(req *request, body []byte) {
	dry, err := dryRun(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	patch, warnings, err := decodeApplyPatch(req, body, req.kind.GVK.Kind)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	fw, ok := fieldWriteFrom(req.r.Context())
	if !ok || fw.manager == "" {
		s.writeError(req.w, req.r, apierrors.NewInternalError(fmt.Errorf("apply without a field manager")))
		return
	}
	force := req.r.URL.Query().Get("force") == "true"
	kind := req.kind
	sub := req.info.Subresource
	fm, err := s.fieldManager(kind, sub)
	if err != nil {
		s.writeError(req.w, req.r, apierrors.NewInternalError(err))
		return
	}
	apply := func(live runtime.Object) (runtime.Object, error) {
		live.GetObjectKind().SetGroupVersionKind(kind.GVK)
		out, err := fm.Apply(live, patch.DeepCopy(), fw.manager, force)
		if err != nil {
			if _, ok := err.(apierrors.APIStatus); ok {
				return nil, err
			}
			return nil, apierrors.NewInternalError(err)
		}
		return out, nil
	}
	fw.applied = true
	ctx := withFieldWrite(req.r.Context(), fw)
	u := &update{
		kind:      kind,
		namespace: req.namespace(),
		name:      req.info.Name,
		status:    sub == registry.SubStatus || sub == registry.SubApproval,
		approval:  sub == registry.SubApproval,
		ephemeral: sub == registry.SubEphemeralContainers,
		dry:       dry,
		tryUpdate: func(old runtime.Object) (runtime.Object, uint64, error) {
			oldRV := mustAccessor(old).GetResourceVersion()
			obj, err := apply(old)
			if err != nil {
				return nil, 0, err
			}
			m := mustAccessor(obj)
			var rv uint64
			if m.GetResourceVersion() != oldRV {
				// The applied configuration set resourceVersion: a
				// precondition.
				if rv, err = parseRV(m.GetResourceVersion()); err != nil {
					return nil, 0, err
				}
				if rv == 0 {
					m.SetResourceVersion(oldRV)
				}
			}
			return obj, rv, nil
		},
	}
	if sub == "" {
		u.create = func(ctx context.Context) (runtime.Object, error) {
			live := kind.New()
			lm := mustAccessor(live)
			lm.SetName(req.info.Name)
			lm.SetNamespace(req.namespace())
			obj, err := apply(live)
			if err != nil {
				return nil, err
			}
			if rv := mustAccessor(obj).GetResourceVersion(); rv != "" {
				// kube-apiserver: an apply that names a resourceVersion
				// updates, and there is nothing to update.
				return nil, apierrors.NewConflict(kind.GroupResource(), req.info.Name, errModified)
			}
			return s.create(ctx, kind, obj, dry)
		}
	}
	out, created, err := s.guaranteedUpdate(ctx, u)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	addWarnings(req.w, warnings)
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	s.writeObject(req, code, out)
}

// decodeApplyPatch decodes an apply patch (YAML or JSON; CBOR is 415) as
// kube-apiserver does, checks its kind (wantKind), name and namespace
// against the URL and fills the
// ones it leaves out. Duplicate fields fail it under fieldValidation=Strict
// and are warnings under Warn; unknown fields fail the field manager's
// typed conversion.
func decodeApplyPatch(req *request, body []byte, wantKind string) (*unstructured.Unstructured, []string, error) {
	if patchTypeOf(req) == types.ApplyCBORPatchType {
		return nil, nil, unsupportedMediaType(string(types.ApplyCBORPatchType))
	}
	validation, err := fieldValidation(req.r)
	if err != nil {
		return nil, nil, err
	}
	patch := &unstructured.Unstructured{Object: map[string]any{}}
	// Whole numbers as int64 (apimachinery's json), as in any other
	// decoded object: a custom object is validated as it is.
	j, err := yaml.YAMLToJSON(body)
	if err == nil {
		err = utiljson.Unmarshal(j, &patch.Object)
	}
	if err != nil {
		return nil, nil, badRequest("error decoding patch: %v", err)
	}
	if patch.Object == nil {
		return nil, nil, badRequest("error decoding patch: the patch is empty")
	}
	var warnings []string
	if validation != fieldValidationIgnore {
		if err := yaml.UnmarshalStrict(body, &map[string]any{}); err != nil {
			if validation == fieldValidationStrict {
				return nil, nil, badRequest("error strict decoding patch: %v", err)
			}
			warnings = append(warnings, err.Error())
		}
	}
	kind := req.kind
	if k := patch.GetKind(); k != wantKind {
		return nil, nil, badRequest("the kind of the applied object (%q) does not match the kind of the URL (%q)", k, wantKind)
	}
	switch n := patch.GetName(); n {
	case "":
		patch.SetName(req.info.Name)
	case req.info.Name:
	default:
		return nil, nil, badRequest("the name of the object (%s) does not match the name on the URL (%s)", n, req.info.Name)
	}
	switch ns := patch.GetNamespace(); {
	case !kind.Namespaced:
		if ns != "" {
			unstructured.RemoveNestedField(patch.Object, "metadata", "namespace")
		}
	case ns == "":
		patch.SetNamespace(req.namespace())
	case ns != req.namespace():
		return nil, nil, badRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	return patch, warnings, nil
}
