package apiserver

import (
	"net/http"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
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
	// proto: the answer is application/vnd.kubernetes.protobuf (JSON
	// otherwise).
	proto bool
}

func (o output) metaAPIVersion() string { return "meta.k8s.io/" + o.metaVersion }

// negotiateOutput picks the response form from Accept as kube-apiserver
// does (k8s.io/apiserver's negotiation: clauses by q-value, then order):
// JSON or protobuf, the object itself, a Table (JSON only) or
// PartialObjectMetadata. A custom resource has no protobuf form: a client
// that accepts nothing else gets 406.
func negotiateOutput(req *request) (output, error) {
	r := req.r
	out := output{kind: outputObject, includeObject: metav1.IncludeMetadata}
	switch v := metav1.IncludeObjectPolicy(r.URL.Query().Get("includeObject")); v {
	case "":
	case metav1.IncludeNone, metav1.IncludeMetadata, metav1.IncludeObject:
		out.includeObject = v
	default:
		return out, badRequest("includeObject: Unsupported value: %q: supported values: %q, %q, %q", v,
			metav1.IncludeMetadata, metav1.IncludeNone, metav1.IncludeObject)
	}
	custom := req.kind != nil && req.kind.Custom()
	opts, _, err := negotiation.NegotiateOutputMediaType(r, wireNegotiator{}, endpointRestrictions{custom: custom})
	if err != nil {
		return out, err
	}
	out.proto = opts.Accepted.MediaType == mediaProtobuf
	if c := opts.Convert; c != nil {
		out.metaVersion = c.Version
		switch c.Kind {
		case "Table":
			out.kind = outputTable
		case "PartialObjectMetadata", "PartialObjectMetadataList":
			out.kind = outputMetadata
		}
	}
	return out, nil
}

// write answers obj in the negotiated media type.
func (o output) write(w http.ResponseWriter, code int, obj runtime.Object) {
	if o.proto {
		writeProto(w, code, obj)
		return
	}
	writeJSON(w, code, obj)
}

// writeObject answers one object in the negotiated form.
func (s *APIServer) writeObject(req *request, code int, obj runtime.Object) {
	out, err := negotiateOutput(req)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	v := obj
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
	out.write(req.w, code, v)
}

// writeStatus answers a success Status (a delete's) in the negotiated
// media type.
func (s *APIServer) writeStatus(req *request, code int, st *metav1.Status) {
	out, err := negotiateOutput(req)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	out.write(req.w, code, st)
}

// writeList answers a list in the negotiated form. items are the list's
// objects; list is the typed list holding them (for outputObject).
func (s *APIServer) writeList(req *request, items []runtime.Object, lm metav1.ListMeta) {
	out, err := negotiateOutput(req)
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
		out.write(req.w, http.StatusOK, t)
	case outputMetadata:
		l := &metav1.PartialObjectMetadataList{
			TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: out.metaAPIVersion()},
			ListMeta: lm,
			Items:    make([]metav1.PartialObjectMetadata, 0, len(items)),
		}
		for _, it := range items {
			l.Items = append(l.Items, *partialMetadata(it, out.metaVersion))
		}
		out.write(req.w, http.StatusOK, l)
	default:
		list, err := s.typedList(req, items, lm)
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		out.write(req.w, http.StatusOK, list)
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
