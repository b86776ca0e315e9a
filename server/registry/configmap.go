package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxDataBytes is the size limit of a ConfigMap's or Secret's data.
const maxDataBytes = 1024 * 1024

func configMapKind() *Kind {
	return &Kind{
		GVK:        corev1.SchemeGroupVersion.WithKind("ConfigMap"),
		Resource:   "configmaps",
		Namespaced: true,
		ShortNames: []string{"cm"},
		newObject:  func() runtime.Object { return &corev1.ConfigMap{} },
		newList:    func() runtime.Object { return &corev1.ConfigMapList{} },
		validate: func(obj runtime.Object) field.ErrorList {
			cm := obj.(*corev1.ConfigMap)
			return validateConfigMapData(cm.Data, cm.BinaryData)
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cm, oldCM := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
			return validateImmutableData(oldCM.Immutable, cm.Immutable,
				apiequality.Semantic.DeepEqual(cm.Data, oldCM.Data), apiequality.Semantic.DeepEqual(cm.BinaryData, oldCM.BinaryData))
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Data", "integer", "Number of data entries", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			cm := obj.(*corev1.ConfigMap)
			return []any{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), Age(cm.CreationTimestamp, now)}
		},
	}
}

func validateConfigMapData(data map[string]string, binary map[string][]byte) field.ErrorList {
	var errs field.ErrorList
	size := 0
	for key, v := range data {
		p := field.NewPath("data").Key(key)
		for _, msg := range utilvalidation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(p, key, msg))
		}
		if _, dup := binary[key]; dup {
			errs = append(errs, field.Invalid(p, key, "duplicate of key present in binaryData"))
		}
		size += len(v)
	}
	for key, v := range binary {
		p := field.NewPath("binaryData").Key(key)
		for _, msg := range utilvalidation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(p, key, msg))
		}
		size += len(v)
	}
	if size > maxDataBytes {
		errs = append(errs, field.TooLong(field.NewPath(""), "", maxDataBytes))
	}
	return errs
}

// validateImmutableData refuses data changes of an object marked
// immutable, and unsetting immutable.
func validateImmutableData(oldImmutable, newImmutable *bool, dataEqual, binaryEqual bool) field.ErrorList {
	if oldImmutable == nil || !*oldImmutable {
		return nil
	}
	var errs field.ErrorList
	if newImmutable == nil || !*newImmutable {
		errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
	}
	if !dataEqual {
		errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
	}
	if !binaryEqual {
		errs = append(errs, field.Forbidden(field.NewPath("binaryData"), "field is immutable when `immutable` is set"))
	}
	return errs
}
