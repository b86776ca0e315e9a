package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func serviceAccountKind() *Kind {
	return &Kind{
		GVK:               corev1.SchemeGroupVersion.WithKind("ServiceAccount"),
		Resource:          "serviceaccounts",
		Namespaced:        true,
		ShortNames:        []string{"sa"},
		newObject:         func() runtime.Object { return &corev1.ServiceAccount{} },
		newList:           func() runtime.Object { return &corev1.ServiceAccountList{} },
		extraSubresources: []Subresource{{Name: SubToken, GVK: tokenGVK, Verbs: []string{"create"}}},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			sa := obj.(*corev1.ServiceAccount)
			return []any{sa.Name, int64(len(sa.Secrets)), Age(sa.CreationTimestamp, now)}
		},
	}
}
