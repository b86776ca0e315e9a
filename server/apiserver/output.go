package apiserver

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// outputKind is the form of a response negotiated from Accept.
type outputKind int

const (
	outputObject   outputKind = iota // the typed object or list
	outputTable                      // metav1.Table (as=Table)
	outputMetadata                   // PartialObjectMetadata(List)
)

// output is a negotiated response form.
type output struct {
	kind outputKind
	// metaVersion is the meta.k8s.io version of a Table or
	// PartialObjectMetadata ("v1" or "v1beta1").
	metaVersion   string
	includeObject metav1.IncludeObjectPolicy
}

func (o output) metaAPIVersion() string { return "meta.k8s.io/" + o.metaVersion }

// negotiateOutput picks the first Accept clause we can serve. Responses are
// JSON; protobuf-only clients get 406.
func negotiateOutput(r *http.Request) (output, error) {
	out := output{kind: outputObject, includeObject: metav1.IncludeMetadata}
	switch v := metav1.IncludeObjectPolicy(r.URL.Query().Get("includeObject")); v {
	case "":
	case metav1.IncludeNone, metav1.IncludeMetadata, metav1.IncludeObject:
		out.includeObject = v
	default:
		return out, badRequest("includeObject: Unsupported value: %q: supported values: %q, %q, %q", v,
			metav1.IncludeMetadata, metav1.IncludeNone, metav1.IncludeObject)
	}
	accept := r.Header.Get("Accept")
	if strings.TrimSpace(accept) == "" {
		return out, nil
	}
	for _, clause := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(clause))
		if err != nil {
			continue
		}
		switch mt {
		case "application/json", "application/*", "*/*":
		default:
			continue
		}
		as, g, v := params["as"], params["g"], params["v"]
		switch as {
		case "":
			return out, nil
		case "Table":
			if g == metav1.GroupName && (v == "v1" || v == "v1beta1") {
				out.kind, out.metaVersion = outputTable, v
				return out, nil
			}
		case "PartialObjectMetadata", "PartialObjectMetadataList":
			if g == metav1.GroupName && (v == "v1" || v == "v1beta1") {
				out.kind, out.metaVersion = outputMetadata, v
				return out, nil
			}
		}
	}
	return out, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "", fmt.Sprintf(
		"only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, "+
			"application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io (got %q)", accept), 0, false)
}

// writeObject answers one object in the negotiated form.
func (s *APIServer) writeObject(req *request, code int, obj runtime.Object) {
	out, err := negotiateOutput(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	var v any = obj
	switch out.kind {
	case outputTable:
		m, _ := meta.Accessor(obj)
		t, err := s.toTable(req, out, []runtime.Object{obj}, metav1.ListMeta{ResourceVersion: m.GetResourceVersion()}, true)
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		v = t
	case outputMetadata:
		v = partialMetadata(obj, out.metaVersion)
	}
	writeJSON(req.w, code, v)
}

// writeList answers a list in the negotiated form. items are the list's
// objects; list is the typed list holding them (for outputObject).
func (s *APIServer) writeList(req *request, items []runtime.Object, lm metav1.ListMeta) {
	out, err := negotiateOutput(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	switch out.kind {
	case outputTable:
		t, err := s.toTable(req, out, items, lm, true)
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		writeJSON(req.w, http.StatusOK, t)
	case outputMetadata:
		l := &metav1.PartialObjectMetadataList{
			TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: out.metaAPIVersion()},
			ListMeta: lm,
			Items:    make([]metav1.PartialObjectMetadata, 0, len(items)),
		}
		for _, it := range items {
			l.Items = append(l.Items, *partialMetadata(it, out.metaVersion))
		}
		writeJSON(req.w, http.StatusOK, l)
	default:
		list, err := s.typedList(req, items, lm)
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		writeJSON(req.w, http.StatusOK, list)
	}
}

// typedList builds the kind's typed list (ConfigMapList...) of items.
func (s *APIServer) typedList(req *request, items []runtime.Object, lm metav1.ListMeta) (runtime.Object, error) {
	list := req.kind.NewList()
	if err := meta.SetList(list, items); err != nil {
		return nil, err
	}
	la, err := meta.ListAccessor(list)
	if err != nil {
		return nil, err
	}
	la.SetResourceVersion(lm.ResourceVersion)
	la.SetContinue(lm.Continue)
	la.SetRemainingItemCount(lm.RemainingItemCount)
	// Items inside a typed list carry no apiVersion/kind (as kube); those
	// of a custom resource list keep theirs.
	if req.kind.Custom() {
		return list, nil
	}
	if err := meta.EachListItem(list, func(o runtime.Object) error {
		o.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
		return nil
	}); err != nil {
		return nil, err
	}
	return list, nil
}

// partialMetadata returns obj's metadata as a PartialObjectMetadata.
func partialMetadata(obj runtime.Object, version string) *metav1.PartialObjectMetadata {
	pom := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/" + version}}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		pom.ObjectMeta = unstructuredMeta(u)
		return pom
	}
	if a, ok := obj.(metav1.ObjectMetaAccessor); ok {
		if om, ok := a.GetObjectMeta().(*metav1.ObjectMeta); ok {
			pom.ObjectMeta = *om.DeepCopy()
		}
	}
	return pom
}
