package registry

import (
	"context"
	"encoding/json"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// CustomConverter converts custom objects between the versions of a CRD
// whose spec.conversion.strategy is Webhook (server/admission/webhook's
// Converter calls the CRD's conversion webhook).
type CustomConverter interface {
	Convert(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition, obj *unstructured.Unstructured, toVersion string) (*unstructured.Unstructured, error)
}

// SetCustomConverter sets the converter of CRDs with the Webhook
// conversion strategy; call it before serving. Without one, such CRDs'
// versions are served as with strategy None.
func (r *Registry) SetCustomConverter(c CustomConverter) { r.converter = c }

// customConversion is how a custom kind's objects are converted: stored at
// the CRD's storage version, converted by the webhook on every read as
// another version and before every write of another version.
type customConversion struct {
	crd     *apiextensionsv1.CustomResourceDefinition
	conv    CustomConverter
	storage schema.GroupVersionKind
}

// webhookConversion returns the conversion of crd's kinds, or nil when the
// CRD's strategy is not Webhook.
func webhookConversion(crd *apiextensionsv1.CustomResourceDefinition, conv CustomConverter, storage *Kind) *customConversion {
	c := crd.Spec.Conversion
	if conv == nil || storage == nil || c == nil || c.Strategy != apiextensionsv1.WebhookConverter {
		return nil
	}
	return &customConversion{crd: crd, conv: conv, storage: storage.GVK}
}

// decode converts a stored object to version (its apiVersion is the
// version it was stored at).
func (c *customConversion) decode(u *unstructured.Unstructured, version string) (*unstructured.Unstructured, error) {
	return c.conv.Convert(context.Background(), c.crd, u, version)
}

// encode returns the stored form of u, of kind k: converted to the
// storage version, without resourceVersion.
func (c *customConversion) encode(k *Kind, u *unstructured.Unstructured) ([]byte, error) {
	cp := u.DeepCopy()
	cp.SetGroupVersionKind(k.GVK)
	cp.SetResourceVersion("")
	out, err := c.conv.Convert(context.Background(), c.crd, cp, c.storage.Version)
	if err != nil {
		return nil, err
	}
	out.SetGroupVersionKind(c.storage)
	b, err := json.Marshal(out.Object)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", k.GVK.Kind, u.GetName(), err)
	}
	return b, nil
}
