package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ComponentStatuses (core v1, deprecated upstream) are read-only and not
// stored: the API server answers them from the health of the master's
// parts (the scheduler, the controllers and each Raft voter standing for
// etcd).
func componentStatusKind() *Kind {
	return &Kind{
		GVK:        corev1.SchemeGroupVersion.WithKind("ComponentStatus"),
		Resource:   "componentstatuses",
		ShortNames: []string{"cs"},
		Virtual:    true,
		Verbs:      []string{"get", "list"},
		newObject:  func() runtime.Object { return &corev1.ComponentStatus{} },
		newList:    func() runtime.Object { return &corev1.ComponentStatusList{} },
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Status", "string", "Status of the component conditions", 0),
			col("Message", "string", "Message of the component conditions", 0),
			col("Error", "string", "Error of the component conditions", 0),
		},
		cells: func(obj runtime.Object, _ time.Time) []any {
			cs := obj.(*corev1.ComponentStatus)
			status, msg, errText := "Unknown", "", ""
			for _, c := range cs.Conditions {
				if c.Type != corev1.ComponentHealthy {
					continue
				}
				status = "Unhealthy"
				if c.Status == corev1.ConditionTrue {
					status = "Healthy"
				}
				msg, errText = c.Message, c.Error
			}
			return []any{cs.Name, status, msg, errText}
		},
	}
}
