package registry

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/kube-aggregator/pkg/apis/apiregistration/v1/helper"
)

// APIServices (apiregistration.k8s.io/v1, cluster-scoped, with status)
// name the group versions the API serves, as kube-aggregator's do: the
// leader keeps a local one (no spec.service) for every built-in and
// custom group version. Skiff does not proxy to aggregated API servers:
// an APIService naming a Service is stored, validated and listed, and
// its group is not served (docs/api.md).
func apiServiceKind() *Kind {
	return &Kind{
		GVK:        apiregistrationv1.SchemeGroupVersion.WithKind("APIService"),
		Resource:   "apiservices",
		Categories: []string{"api-extensions"},
		HasStatus:  true,
		NameFn:     func(name string, _ bool) []string { return path.IsValidPathSegmentName(name) },
		newObject:  func() runtime.Object { return &apiregistrationv1.APIService{} },
		newList:    func() runtime.Object { return &apiregistrationv1.APIServiceList{} },
		prepareForCreate: func(obj runtime.Object) {
			as := obj.(*apiregistrationv1.APIService)
			as.Status = apiregistrationv1.APIServiceStatus{}
			if as.Spec.Service == nil {
				// Local APIServices are available at once.
				helper.SetAPIServiceCondition(as, helper.NewLocalAvailableAPIServiceCondition())
			}
		},
		defaults: func(obj runtime.Object) {
			if s := obj.(*apiregistrationv1.APIService).Spec.Service; s != nil && s.Port == nil {
				port := int32(443)
				s.Port = &port
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validateAPIService(obj.(*apiregistrationv1.APIService))
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			var errs field.ErrorList
			ok := []string{string(apiregistrationv1.ConditionTrue), string(apiregistrationv1.ConditionFalse), string(apiregistrationv1.ConditionUnknown)}
			for i, c := range obj.(*apiregistrationv1.APIService).Status.Conditions {
				if !contains(ok, string(c.Status)) {
					errs = append(errs, field.NotSupported(field.NewPath("status", "conditions").Index(i).Child("status"), c.Status, ok))
				}
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Service", "string", "The reference to the service that hosts this API endpoint.", 0),
			col("Available", "string", "Whether this service is available.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			as := obj.(*apiregistrationv1.APIService)
			service := "Local"
			if s := as.Spec.Service; s != nil {
				service = s.Namespace + "/" + s.Name
			}
			available := string(apiregistrationv1.ConditionUnknown)
			if c := helper.GetAPIServiceConditionByType(as, apiregistrationv1.Available); c != nil {
				available = string(c.Status)
				if c.Status != apiregistrationv1.ConditionTrue && c.Reason != "" {
					available = fmt.Sprintf("%s (%s)", c.Status, c.Reason)
				}
			}
			return []any{as.Name, service, available, Age(as.CreationTimestamp, now)}
		},
	}
}

// validateAPIService follows kube-aggregator's validation.
func validateAPIService(as *apiregistrationv1.APIService) field.ErrorList {
	var errs field.ErrorList
	s := &as.Spec
	sp := field.NewPath("spec")
	if want := s.Version + "." + s.Group; as.Name != want && len(path.IsValidPathSegmentName(as.Name)) == 0 {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), as.Name, fmt.Sprintf("must be `spec.version+\".\"+spec.group`: %q", want)))
	}
	if s.Group == "" && s.Version != "v1" {
		errs = append(errs, field.Required(sp.Child("group"), "only v1 may have an empty group and it better be legacy kube"))
	}
	if s.Group != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.Group) {
			errs = append(errs, field.Invalid(sp.Child("group"), s.Group, msg))
		}
	}
	for _, msg := range validation.IsDNS1035Label(s.Version) {
		errs = append(errs, field.Invalid(sp.Child("version"), s.Version, msg))
	}
	if s.GroupPriorityMinimum <= 0 || s.GroupPriorityMinimum > 20000 {
		errs = append(errs, field.Invalid(sp.Child("groupPriorityMinimum"), s.GroupPriorityMinimum, "must be positive and less than 20000"))
	}
	if s.VersionPriority <= 0 || s.VersionPriority > 1000 {
		errs = append(errs, field.Invalid(sp.Child("versionPriority"), s.VersionPriority, "must be positive and less than 1000"))
	}
	if s.Service == nil {
		if len(s.CABundle) != 0 {
			errs = append(errs, field.Invalid(sp.Child("caBundle"), fmt.Sprintf("%d bytes", len(s.CABundle)), "local APIServices may not have a caBundle"))
		}
		if s.InsecureSkipTLSVerify {
			errs = append(errs, field.Invalid(sp.Child("insecureSkipTLSVerify"), s.InsecureSkipTLSVerify, "local APIServices may not have insecureSkipTLSVerify"))
		}
		return errs
	}
	svc := sp.Child("service")
	if s.Service.Namespace == "" {
		errs = append(errs, field.Required(svc.Child("namespace"), ""))
	}
	if s.Service.Name == "" {
		errs = append(errs, field.Required(svc.Child("name"), ""))
	}
	if s.Service.Port != nil {
		if msgs := validation.IsValidPortNum(int(*s.Service.Port)); msgs != nil {
			errs = append(errs, field.Invalid(svc.Child("port"), *s.Service.Port, "port is not valid: "+strings.Join(msgs, ", ")))
		}
	}
	if s.InsecureSkipTLSVerify && len(s.CABundle) > 0 {
		errs = append(errs, field.Invalid(sp.Child("insecureSkipTLSVerify"), s.InsecureSkipTLSVerify, "may not be true if caBundle is present"))
	}
	return errs
}
