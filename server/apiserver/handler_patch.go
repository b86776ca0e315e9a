package apiserver

import (
	"encoding/json"
	"mime"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/server/registry"
)

// handlePatch serves PATCH with JSON patch, merge patch and strategic
// merge patch, of an object, its status or (CSRs) its approval. The patch is applied to the
// current object and the result goes through the update path; a
// resourceVersion set by the patch is a precondition, otherwise conflicts
// are retried on the fresh object.
func (s *APIServer) handlePatch(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	auditRequestBody(req.r, body)
	ct := req.r.Header.Get("Content-Type")
	pt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		s.writeError(req.w, req.r, unsupportedMediaType(ct))
		return
	}
	if isApply(req) {
		s.handleApply(req, body) // apply.go
		return
	}
	p, err := s.newPatcher(req, pt, body, req.kind.New())
	if err != nil {
		s.writeError(req.w, req.r, err)
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
		status:    req.info.Subresource == registry.SubStatus || req.info.Subresource == registry.SubApproval,
		approval:  req.info.Subresource == registry.SubApproval,
		ephemeral: req.info.Subresource == registry.SubEphemeralContainers,
		dry:       dry,
		tryUpdate: func(old runtime.Object) (runtime.Object, uint64, error) {
			orig, err := json.Marshal(old)
			if err != nil {
				return nil, 0, apierrors.NewInternalError(err)
			}
			patched, err := p.apply(orig)
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
