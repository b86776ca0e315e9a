package apiserver

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/skiff-io/skiff/server/registry"
)

var scaleGVK = autoscalingv1.SchemeGroupVersion.WithKind("Scale")

// serveSubresource serves the subresources other than status.
func (s *APIServer) serveSubresource(req *request) {
	verb := req.info.Verb
	switch sub := req.info.Subresource; sub {
	case registry.SubScale:
		switch verb {
		case "get":
			s.handleScaleGet(req)
		case "update":
			s.handleScaleUpdate(req)
		case "patch":
			s.handleScalePatch(req)
		default:
			s.writeError(req.w, req.r, methodNotSupported(req))
		}
	case registry.SubBinding:
		if verb != "create" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleBinding(req)
	case registry.SubEviction:
		if verb != "create" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleEviction(req)
	case registry.SubLog, registry.SubExec, registry.SubAttach, registry.SubPortForward:
		if verb != "get" && verb != "create" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleStreaming(req)
	case registry.SubEphemeralContainers:
		switch verb {
		case "get":
			s.handleGet(req)
		case "update":
			s.handleUpdate(req)
		case "patch":
			s.handlePatch(req)
		default:
			s.writeError(req.w, req.r, methodNotSupported(req))
		}
	case registry.SubProxy:
		s.handleProxy(req) // proxy_resources.go
	case registry.SubFinalize:
		if verb != "update" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleFinalize(req)
	case registry.SubApproval:
		switch verb {
		case "get":
			s.handleGet(req)
		case "update":
			s.handleApproval(req) // handler_approval.go
		case "patch":
			s.handlePatch(req)
		default:
			s.writeError(req.w, req.r, methodNotSupported(req))
		}
	case registry.SubToken:
		if verb != "create" {
			s.writeError(req.w, req.r, methodNotSupported(req))
			return
		}
		s.handleTokenRequest(req)
	default:
		s.writeError(req.w, req.r, notFoundPath())
	}
}

// scaleOf builds the autoscaling/v1 Scale of obj.
func scaleOf(kind *registry.Kind, obj runtime.Object) *autoscalingv1.Scale {
	m := mustAccessor(obj)
	spec, status, sel := kind.Scale.Get(obj)
	return &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: autoscalingv1.SchemeGroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{
			Name:              m.GetName(),
			Namespace:         m.GetNamespace(),
			UID:               m.GetUID(),
			ResourceVersion:   m.GetResourceVersion(),
			CreationTimestamp: m.GetCreationTimestamp(),
		},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: sel},
	}
}

func (s *APIServer) handleScaleGet(req *request) {
	snap, err := s.readAt(req.r.Context(), req.r.URL.Query().Get("resourceVersion"))
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	_, obj, err := getObject(snap, req.kind, req.namespace(), req.info.Name)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	writeJSON(req.w, http.StatusOK, scaleOf(req.kind, obj))
}

// handleScaleUpdate serves PUT of a Scale: spec.replicas of the object
// changes; the Scale's resourceVersion and UID are preconditions.
func (s *APIServer) handleScaleUpdate(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	obj, warnings, err := s.decode.decodeBody(req.r, body, scaleGVK, &autoscalingv1.Scale{})
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	scale := obj.(*autoscalingv1.Scale)
	if scale.Name != "" && scale.Name != req.info.Name {
		s.writeError(req.w, req.r, badRequest("the name of the object (%s) does not match the name on the URL (%s)", scale.Name, req.info.Name))
		return
	}
	addWarnings(req.w, warnings)
	s.scaleTo(req, func(*autoscalingv1.Scale) (*autoscalingv1.Scale, error) { return scale, nil })
}

// handleScalePatch serves PATCH of a Scale (merge, strategic merge or JSON
// patch of the Scale document).
func (s *APIServer) handleScalePatch(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	if isApply(req) {
		s.handleScaleApply(req, body)
		return
	}
	ct := req.r.Header.Get("Content-Type")
	pt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		s.writeError(req.w, req.r, unsupportedMediaType(ct))
		return
	}
	p, err := s.newPatcher(req, pt, body, &autoscalingv1.Scale{})
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	s.scaleTo(req, func(cur *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
		orig, err := json.Marshal(cur)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		patched, err := p.apply(orig)
		if err != nil {
			return nil, err
		}
		out := &autoscalingv1.Scale{}
		if err := json.Unmarshal(patched, out); err != nil {
			return nil, badRequest("%v", err)
		}
		if out.ResourceVersion == cur.ResourceVersion {
			// The patch did not set one: no precondition.
			out.ResourceVersion = ""
		}
		return out, nil
	})
}

// handleScaleApply serves a server-side apply of a Scale: the Scale's
// field manager merges the applied replicas into the current Scale, whose
// managedFields are the object's owners of its replicas field, and the
// result goes back to the object's managedFields (apimachinery's
// ScaleHandler), as kube-apiserver does for every scale subresource.
func (s *APIServer) handleScaleApply(req *request, body []byte) {
	patch, warnings, err := decodeApplyPatch(req, body, scaleGVK.Kind)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	if patch.GetAPIVersion() == "" {
		patch.SetAPIVersion(scaleGVK.GroupVersion().String())
	}
	force := req.r.URL.Query().Get("force") == "true"
	addWarnings(req.w, warnings)
	s.scaleWrite(req, func(fm *managedfields.FieldManager, cur *autoscalingv1.Scale, manager string) (*autoscalingv1.Scale, error) {
		out, err := fm.Apply(cur, patch.DeepCopy(), manager, force)
		if err != nil {
			if _, ok := err.(apierrors.APIStatus); ok {
				return nil, err
			}
			return nil, apierrors.NewInternalError(err)
		}
		return toScale(out)
	})
}

// toScale returns obj (a field manager's result) as a typed Scale.
func toScale(obj runtime.Object) (*autoscalingv1.Scale, error) {
	switch o := obj.(type) {
	case *autoscalingv1.Scale:
		return o, nil
	case *unstructured.Unstructured:
		out := &autoscalingv1.Scale{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, out); err != nil {
			return nil, badRequest("%v", err)
		}
		return out, nil
	default:
		return nil, apierrors.NewInternalError(fmt.Errorf("scale field manager returned %T", obj))
	}
}

// scaleTo runs the read-modify-write of a scale change: next returns the
// wanted Scale from the current one; the request's manager then owns the
// replicas (operation Update).
func (s *APIServer) scaleTo(req *request, next func(cur *autoscalingv1.Scale) (*autoscalingv1.Scale, error)) {
	s.scaleWrite(req, func(fm *managedfields.FieldManager, cur *autoscalingv1.Scale, manager string) (*autoscalingv1.Scale, error) {
		want, err := next(cur.DeepCopy())
		if err != nil {
			return nil, err
		}
		want.TypeMeta = cur.TypeMeta
		want.ManagedFields = cur.ManagedFields
		out, err := fm.Update(cur, want, manager)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		return toScale(out)
	})
}

// scaleWrite runs the read-modify-write of a Scale: write returns the new
// Scale from the current one (with the object's replicas owners as its
// managedFields), and the new replicas and owners go back to the object.
func (s *APIServer) scaleWrite(req *request, write func(fm *managedfields.FieldManager, cur *autoscalingv1.Scale, manager string) (*autoscalingv1.Scale, error)) {
	dry, err := dryRun(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	fm, err := s.scaleFieldManager()
	if err != nil {
		s.writeError(req.w, req.r, apierrors.NewInternalError(err))
		return
	}
	fw, ok := fieldWriteFrom(req.r.Context())
	if !ok || fw.manager == "" {
		s.writeError(req.w, req.r, apierrors.NewInternalError(fmt.Errorf("scale write without a field manager")))
		return
	}
	// The object's managedFields are set here, from the Scale's.
	fw.applied = true
	ctx := withFieldWrite(req.r.Context(), fw)
	kind := req.kind
	u := &update{
		kind:      kind,
		namespace: req.namespace(),
		name:      req.info.Name,
		dry:       dry,
		tryUpdate: func(old runtime.Object) (runtime.Object, uint64, error) {
			m := mustAccessor(old)
			handler := managedfields.NewScaleHandler(m.GetManagedFields(), kind.GVK.GroupVersion(), replicasPaths(kind, m.GetManagedFields()))
			cur := scaleOf(kind, old)
			entries, err := handler.ToSubresource()
			if err != nil {
				return nil, 0, apierrors.NewInternalError(err)
			}
			cur.ManagedFields = entries
			want, err := write(fm, cur, fw.manager)
			if err != nil {
				return nil, 0, err
			}
			if want.Spec.Replicas < 0 {
				return nil, 0, apierrors.NewInvalid(schema.GroupKind{Group: autoscalingv1.GroupName, Kind: "Scale"}, req.info.Name,
					field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), want.Spec.Replicas, "must be greater than or equal to 0")})
			}
			var rv uint64
			if want.ResourceVersion != cur.ResourceVersion {
				if rv, err = parseRV(want.ResourceVersion); err != nil {
					return nil, 0, err
				}
			}
			if want.UID != "" && want.UID != m.GetUID() {
				return nil, 0, apierrors.NewConflict(kind.GroupResource(), req.info.Name, errModified)
			}
			parent, err := handler.ToParent(want.ManagedFields)
			if err != nil {
				return nil, 0, apierrors.NewInternalError(err)
			}
			stampScaleTimes(parent, want.ManagedFields)
			kind.Scale.Set(old, want.Spec.Replicas)
			m.SetManagedFields(parent)
			return old, rv, nil
		},
	}
	out, _, err := s.guaranteedUpdate(ctx, u)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	writeJSON(req.w, http.StatusOK, scaleOf(kind, out))
}

// replicasPaths maps each API version of kind that its managedFields name
// to its replicas path: a custom resource is one stored form served in
// every version, so the path is the same in all of them.
func replicasPaths(kind *registry.Kind, entries []metav1.ManagedFieldsEntry) managedfields.ResourcePathMappings {
	parts := make([]any, len(kind.Scale.SpecReplicasPath))
	for i, p := range kind.Scale.SpecReplicasPath {
		parts[i] = p
	}
	path := fieldpath.MakePathOrDie(parts...)
	out := managedfields.ResourcePathMappings{kind.GVK.GroupVersion().String(): path}
	for _, e := range entries {
		if gv, err := schema.ParseGroupVersion(e.APIVersion); err == nil && gv.Group == kind.GVK.Group {
			out[e.APIVersion] = path
		}
	}
	return out
}

// stampScaleTimes gives the entries ScaleHandler.ToParent made for
// managers new to the object (it takes their time from the object's
// entries, where they have none) the time of their Scale entry.
func stampScaleTimes(parent, scale []metav1.ManagedFieldsEntry) {
	for i := range parent {
		if parent[i].Time != nil {
			continue
		}
		for _, e := range scale {
			if e.Manager == parent[i].Manager && e.Operation == parent[i].Operation && e.Subresource == parent[i].Subresource {
				parent[i].Time = e.Time
			}
		}
	}
}
