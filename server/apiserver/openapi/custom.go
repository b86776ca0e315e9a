package openapi

import (
	"errors"
	"fmt"

	"k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/skiff-io/skiff/server/registry"
)

// addCustomResources adds the paths and schemas of every served custom
// resource version, built by apiextensions-apiserver's OpenAPI builder
// from the CRD's structural schema (as kube-apiserver publishes them): to
// the v2 document, and as one v3 document per custom group version. A CRD
// whose document does not build is left out and named in the error.
func addCustomResources(docs *Documents, reg *registry.Registry) error {
	var (
		errs []error
		v2s  []*spec.Swagger
		v3s  = map[string][]*spec3.OpenAPI{}
	)
	for _, crd := range reg.CustomResourceDefinitions() {
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			v2, err := builder.BuildOpenAPIV2(crd, v.Name, builder.Options{V2: true, IncludeSelectableFields: true})
			if err != nil {
				errs = append(errs, fmt.Errorf("openapi v2 of %s %s: %w", crd.Name, v.Name, err))
				continue
			}
			v3, err := builder.BuildOpenAPIV3(crd, v.Name, builder.Options{V2: false, IncludeSelectableFields: true})
			if err != nil {
				errs = append(errs, fmt.Errorf("openapi v3 of %s %s: %w", crd.Name, v.Name, err))
				continue
			}
			v2s = append(v2s, v2)
			gv := "apis/" + crd.Spec.Group + "/" + v.Name
			v3s[gv] = append(v3s[gv], v3)
		}
	}
	if len(v2s) > 0 {
		merged, err := builder.MergeSpecs(docs.V2, v2s...)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("merge openapi v2: %w", err))...)
		}
		docs.V2 = merged
	}
	for gv, specs := range v3s {
		if _, builtin := docs.V3[gv]; builtin {
			errs = append(errs, fmt.Errorf("openapi v3 %s: a built-in group version", gv))
			continue
		}
		merged, err := builder.MergeSpecsV3(specs...)
		if err != nil {
			errs = append(errs, fmt.Errorf("merge openapi v3 %s: %w", gv, err))
			continue
		}
		docs.V3[gv] = merged
	}
	return errors.Join(errs...)
}
