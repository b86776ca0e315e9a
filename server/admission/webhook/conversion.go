package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/skiff-io/skiff/fsm/state"
)

// conversionTimeout is kube-apiserver's fixed timeout for a conversion
// webhook call.
const conversionTimeout = 30 * time.Second

// Converter converts custom objects between the versions of a
// CustomResourceDefinition whose spec.conversion.strategy is Webhook: a
// ConversionReview (the first of the CRD's conversionReviewVersions that
// is v1 or v1beta1) sent to spec.conversion.webhook.clientConfig over the
// same transport as the admission webhooks (a url, or a Service's ready
// endpoint, a pod's reached through its kubelet, which verifies the
// caBundle). As kube-apiserver does, the answer must keep the kind and
// have the desired apiVersion; of its metadata only labels and
// annotations are taken.
type Converter struct {
	d    *Dispatcher
	read func(ctx context.Context) (*state.Snapshot, error)
}

// Converter returns the dispatcher's CRD converter; read gives the state
// a Service is resolved in.
func (d *Dispatcher) Converter(read func(ctx context.Context) (*state.Snapshot, error)) *Converter {
	return &Converter{d: d, read: read}
}

// Convert returns obj converted to version toVersion of crd's group.
func (c *Converter) Convert(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition, obj *unstructured.Unstructured, toVersion string) (*unstructured.Unstructured, error) {
	desired := crd.Spec.Group + "/" + toVersion
	if obj.GetAPIVersion() == desired {
		return obj, nil
	}
	conv := crd.Spec.Conversion
	if conv == nil || conv.Webhook == nil || conv.Webhook.ClientConfig == nil {
		return nil, fmt.Errorf("conversion webhook for %s is not configured", crd.Name)
	}
	reviewVersion := ""
	for _, v := range conv.Webhook.ConversionReviewVersions {
		if v == "v1" || v == "v1beta1" {
			reviewVersion = v
			break
		}
	}
	if reviewVersion == "" {
		return nil, fmt.Errorf("conversion webhook for %s: none of the conversionReviewVersions %v is supported (v1, v1beta1)", crd.Name, conv.Webhook.ConversionReviewVersions)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	// v1 and v1beta1 ConversionReviews have the same fields.
	rev := &apiextensionsv1.ConversionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: apiextensionsv1.GroupName + "/" + reviewVersion, Kind: "ConversionReview"},
		Request: &apiextensionsv1.ConversionRequest{UID: uuid.NewUUID(), DesiredAPIVersion: desired,
			Objects: []runtime.RawExtension{{Raw: raw}}},
	}
	data, err := json.Marshal(rev)
	if err != nil {
		return nil, err
	}
	snap, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	cc := conv.Webhook.ClientConfig
	out, err := c.d.post(ctx, snap, admissionregistrationv1.WebhookClientConfig{URL: cc.URL, Service: serviceRef(cc.Service), CABundle: cc.CABundle},
		data, conversionTimeout)
	if err != nil {
		return nil, fmt.Errorf("conversion webhook for %s failed: %w", obj.GroupVersionKind(), err)
	}
	converted, err := convertedObject(rev.Request.UID, out)
	if err != nil {
		return nil, fmt.Errorf("conversion webhook for %s failed: %w", obj.GroupVersionKind(), err)
	}
	if converted.GetAPIVersion() != desired {
		return nil, fmt.Errorf("conversion webhook for %s returned apiVersion %q, expected %q", obj.GroupVersionKind(), converted.GetAPIVersion(), desired)
	}
	if converted.GetKind() != obj.GetKind() {
		return nil, fmt.Errorf("conversion webhook for %s returned kind %q, expected %q", obj.GroupVersionKind(), converted.GetKind(), obj.GetKind())
	}
	// The metadata is the original's but for labels and annotations.
	meta, _, _ := unstructured.NestedFieldCopy(obj.Object, "metadata")
	labels, annotations := converted.GetLabels(), converted.GetAnnotations()
	if meta != nil {
		converted.Object["metadata"] = meta
	} else {
		delete(converted.Object, "metadata")
	}
	converted.SetLabels(labels)
	converted.SetAnnotations(annotations)
	return converted, nil
}

// convertedObject reads the one converted object of a ConversionReview
// answer.
func convertedObject(uid types.UID, out []byte) (*unstructured.Unstructured, error) {
	var ans apiextensionsv1.ConversionReview
	if err := json.Unmarshal(out, &ans); err != nil {
		return nil, fmt.Errorf("decode ConversionReview: %w", err)
	}
	r := ans.Response
	switch {
	case r == nil:
		return nil, errors.New("no response provided")
	case r.UID != uid:
		return nil, fmt.Errorf("expected response.uid=%q, got %q", uid, r.UID)
	case r.Result.Status != metav1.StatusSuccess:
		return nil, fmt.Errorf("conversion failed: %s", r.Result.Message)
	case len(r.ConvertedObjects) != 1:
		return nil, fmt.Errorf("returned %d objects, expected 1", len(r.ConvertedObjects))
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(r.ConvertedObjects[0].Raw, &u.Object); err != nil {
		return nil, fmt.Errorf("decode converted object: %w", err)
	}
	return u, nil
}

func serviceRef(s *apiextensionsv1.ServiceReference) *admissionregistrationv1.ServiceReference {
	if s == nil {
		return nil
	}
	port := int32(443)
	if s.Port != nil {
		port = *s.Port
	}
	return &admissionregistrationv1.ServiceReference{Namespace: s.Namespace, Name: s.Name, Path: s.Path, Port: &port}
}
