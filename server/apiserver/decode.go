package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/server/registry"
)

// decoder decodes request bodies with the registry's codecs.
type decoder struct {
	codecs serializer.CodecFactory
}

func newDecoder(reg *registry.Registry) *decoder { return &decoder{codecs: reg.Codecs()} }

// fieldValidation values (the fieldValidation query parameter).
const (
	fieldValidationIgnore = "Ignore"
	fieldValidationWarn   = "Warn"
	fieldValidationStrict = "Strict"
)

// readBody reads the request body, refusing more than the limit with 413
// before anything is decoded or proposed.
func (s *APIServer) readBody(r *http.Request) ([]byte, error) {
	limit := s.cfg.MaxBodyBytes
	tooLarge := apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", limit))
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var te *bodyTimeoutError
		if errors.As(err, &te) {
			return nil, requestTimeout(te)
		}
		return nil, badRequest("error reading request body: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, tooLarge
	}
	return b, nil
}

// mediaType returns the request's Content-Type media type (JSON when unset).
func mediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return runtime.ContentTypeJSON, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", unsupportedMediaType(ct)
	}
	return mt, nil
}

// fieldValidation returns the request's fieldValidation directive.
func fieldValidation(r *http.Request) (string, error) {
	switch v := r.URL.Query().Get("fieldValidation"); v {
	case "", fieldValidationWarn:
		return fieldValidationWarn, nil
	case fieldValidationStrict, fieldValidationIgnore:
		return v, nil
	default:
		return "", badRequest("fieldValidation must be one of %q, %q, or %q, got %q",
			fieldValidationIgnore, fieldValidationWarn, fieldValidationStrict, v)
	}
}

// decodeObject decodes body as an object of kind. Unknown and duplicate
// fields fail the request under fieldValidation=Strict and come back as
// warnings under Warn.
func (d *decoder) decodeObject(r *http.Request, body []byte, kind *registry.Kind) (runtime.Object, []string, error) {
	if len(body) == 0 {
		return nil, nil, badRequest("the request body is empty; expected a %s", kind.GVK.Kind)
	}
	mt, err := mediaType(r)
	if err != nil {
		return nil, nil, err
	}
	validation, err := fieldValidation(r)
	if err != nil {
		return nil, nil, err
	}
	obj, warnings, err := d.decodeAs(mt, validation, body, kind)
	if err == nil {
		d.audit(r, obj, kind.GVK)
	}
	return obj, warnings, err
}

// decodeAs decodes body of media type mt as an object of kind.
func (d *decoder) decodeAs(mt, validation string, body []byte, kind *registry.Kind) (runtime.Object, []string, error) {
	info, ok := runtime.SerializerInfoForMediaType(d.codecs.SupportedMediaTypes(), mt)
	if !ok {
		return nil, nil, unsupportedMediaType(mt)
	}
	dec := info.Serializer
	if validation != fieldValidationIgnore && info.StrictSerializer != nil {
		dec = info.StrictSerializer
	}
	into := kind.New()
	defaultGVK := kind.GVK
	obj, gvk, err := dec.Decode(body, &defaultGVK, into)
	var warnings []string
	if err != nil {
		strictErr, isStrict := runtime.AsStrictDecodingError(err)
		if !isStrict || obj == nil || validation == fieldValidationStrict {
			// kube-apiserver's wording.
			return nil, nil, badRequest("%s in version %q cannot be handled as a %s: %v",
				kind.GVK.Kind, kind.GVK.Version, kind.GVK.Kind, err)
		}
		for _, e := range strictErr.Errors() {
			warnings = append(warnings, e.Error())
		}
	}
	if gvk != nil && gvk.GroupVersion() != kind.GVK.GroupVersion() {
		return nil, nil, badRequest("the API version in the data (%s) does not match the expected API version (%s)",
			gvk.GroupVersion(), kind.GVK.GroupVersion())
	}
	if (gvk != nil && gvk.Kind != kind.GVK.Kind) || reflect.TypeOf(obj) != reflect.TypeOf(into) {
		got := ""
		if gvk != nil {
			got = gvk.Kind
		}
		return nil, nil, badRequest("the kind in the data (%s) does not match the expected kind (%s)", got, kind.GVK.Kind)
	}
	obj.GetObjectKind().SetGroupVersionKind(kind.GVK)
	if kind.Custom() && validation != fieldValidationIgnore {
		// What the schema does not know is pruned on write; say so, as
		// kube-apiserver does.
		for _, p := range kind.UnknownFields(obj) {
			if validation == fieldValidationStrict {
				return nil, nil, badRequest("%s in version %q cannot be handled as a %s: strict decoding error: unknown field %q",
					kind.GVK.Kind, kind.GVK.Version, kind.GVK.Kind, p)
			}
			warnings = append(warnings, fmt.Sprintf("unknown field %q", p))
		}
	}
	return obj, warnings, nil
}

// addWarnings sets Warning headers as kube-apiserver does.
func addWarnings(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", "299 - "+strconv.Quote(msg))
	}
}

// decodeDeleteOptions reads DeleteOptions from the body (JSON, YAML or
// protobuf) and the query (gracePeriodSeconds, propagationPolicy,
// orphanDependents, dryRun).
func (d *decoder) decodeDeleteOptions(r *http.Request, body []byte) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	if len(body) > 0 {
		mt, err := mediaType(r)
		if err != nil {
			return nil, err
		}
		switch mt {
		case runtime.ContentTypeProtobuf:
			def := metav1.SchemeGroupVersion.WithKind("DeleteOptions")
			obj, _, err := d.codecs.UniversalDeserializer().Decode(body, &def, opts)
			if err != nil {
				return nil, badRequest("%v", err)
			}
			o, ok := obj.(*metav1.DeleteOptions)
			if !ok {
				return nil, badRequest("expected DeleteOptions, got %T", obj)
			}
			opts = o
		case runtime.ContentTypeYAML:
			if err := yaml.Unmarshal(body, opts); err != nil {
				return nil, badRequest("%v", err)
			}
		default:
			if err := json.Unmarshal(body, opts); err != nil {
				return nil, badRequest("%v", err)
			}
		}
	}
	q := r.URL.Query()
	if v := q.Get("gracePeriodSeconds"); v != "" {
		g, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, badRequest("invalid gracePeriodSeconds %q: %v", v, err)
		}
		opts.GracePeriodSeconds = &g
	}
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	if v := q.Get("orphanDependents"); v != "" {
		o := isTrue(v)
		opts.OrphanDependents = &o //nolint:staticcheck // still part of the API
	}
	if dr := q["dryRun"]; len(dr) > 0 {
		opts.DryRun = dr
	}
	if err := validateDryRun(opts.DryRun); err != nil {
		return nil, err
	}
	if p := opts.PropagationPolicy; p != nil {
		switch *p {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return nil, badRequest("propagationPolicy: Unsupported value: %q: supported values: \"Background\", \"Foreground\", \"Orphan\"", *p)
		}
	}
	return opts, nil
}

// dryRun reports whether the request asks for dryRun=All.
func dryRun(r *http.Request) (bool, error) {
	dr := r.URL.Query()["dryRun"]
	if err := validateDryRun(dr); err != nil {
		return false, err
	}
	return len(dr) > 0, nil
}

func validateDryRun(dr []string) error {
	for _, v := range dr {
		if v != metav1.DryRunAll {
			return badRequest("dryRun: Unsupported value: %q: supported values: %q", v, metav1.DryRunAll)
		}
	}
	return nil
}

// unsupportedMediaType is kube-apiserver's 415.
func unsupportedMediaType(ct string) error {
	return apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "",
		fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got %q)", ct), 0, false)
}

// decodeBody decodes a request body (JSON, YAML or protobuf) of a
// subresource as gvk into into (Scale, Binding, Eviction...). Unknown
// fields fail the request under fieldValidation=Strict.
func (d *decoder) decodeBody(r *http.Request, body []byte, gvk schema.GroupVersionKind, into runtime.Object) (runtime.Object, []string, error) {
	if len(body) == 0 {
		return nil, nil, badRequest("the request body is empty; expected a %s", gvk.Kind)
	}
	mt, err := mediaType(r)
	if err != nil {
		return nil, nil, err
	}
	validation, err := fieldValidation(r)
	if err != nil {
		return nil, nil, err
	}
	info, ok := runtime.SerializerInfoForMediaType(d.codecs.SupportedMediaTypes(), mt)
	if !ok {
		return nil, nil, unsupportedMediaType(mt)
	}
	dec := info.Serializer
	if validation != fieldValidationIgnore && info.StrictSerializer != nil {
		dec = info.StrictSerializer
	}
	obj, got, err := dec.Decode(body, &gvk, into)
	var warnings []string
	if err != nil {
		strictErr, isStrict := runtime.AsStrictDecodingError(err)
		if !isStrict || obj == nil || validation == fieldValidationStrict {
			return nil, nil, badRequest("%v", err)
		}
		for _, e := range strictErr.Errors() {
			warnings = append(warnings, e.Error())
		}
	}
	if got != nil && got.GroupKind() != gvk.GroupKind() || reflect.TypeOf(obj) != reflect.TypeOf(into) {
		return nil, nil, badRequest("the kind in the data (%v) does not match the expected kind (%s)", got, gvk.Kind)
	}
	d.audit(r, obj, gvk)
	return obj, warnings, nil
}
