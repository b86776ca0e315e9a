package registry

import (
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ControllerRevisions are immutable snapshots of a workload's template
// written by the StatefulSet and DaemonSet controllers.
func controllerRevisionKind() *Kind {
	return &Kind{
		GVK:        appsv1.SchemeGroupVersion.WithKind("ControllerRevision"),
		Resource:   "controllerrevisions",
		Namespaced: true,
		newObject:  func() runtime.Object { return &appsv1.ControllerRevision{} },
		newList:    func() runtime.Object { return &appsv1.ControllerRevisionList{} },
		validate: func(obj runtime.Object) field.ErrorList {
			cr := obj.(*appsv1.ControllerRevision)
			if cr.Revision < 0 {
				return field.ErrorList{field.Invalid(field.NewPath("revision"), cr.Revision, "must be greater than or equal to 0")}
			}
			return nil
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cr, o := obj.(*appsv1.ControllerRevision), old.(*appsv1.ControllerRevision)
			if !apiequality.Semantic.DeepEqual(cr.Data, o.Data) {
				return field.ErrorList{field.Invalid(field.NewPath("data"), "<omitted>", "field is immutable")}
			}
			return nil
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Controller", "string", "Controller of the object", 0),
			col("Revision", "integer", "Revision indicates the revision of the state represented by Data.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			cr := obj.(*appsv1.ControllerRevision)
			ctl := "<none>"
			if ref := metav1.GetControllerOf(cr); ref != nil {
				gv, _ := schema.ParseGroupVersion(ref.APIVersion)
				ctl = strings.ToLower(ref.Kind)
				if gv.Group != "" {
					ctl += "." + gv.Group
				}
				ctl += "/" + ref.Name
			}
			return []any{cr.Name, ctl, cr.Revision, Age(cr.CreationTimestamp, now)}
		},
	}
}
