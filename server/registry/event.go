package registry

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
)

// Events (core/v1). Recorders create or update them by name.
func eventKind() *Kind {
	return &Kind{
		GVK:                 corev1.SchemeGroupVersion.WithKind("Event"),
		Resource:            "events",
		Namespaced:          true,
		ShortNames:          []string{"ev"},
		AllowCreateOnUpdate: true,
		newObject:           func() runtime.Object { return &corev1.Event{} },
		newList:             func() runtime.Object { return &corev1.EventList{} },
		fieldNames: []string{"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
			"involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
			"reason", "reportingComponent", "source", "type"},
		fields: func(obj runtime.Object) fields.Set {
			e := obj.(*corev1.Event)
			source := e.Source.Component
			if source == "" {
				source = e.ReportingController
			}
			return fields.Set{
				"involvedObject.kind":            e.InvolvedObject.Kind,
				"involvedObject.namespace":       e.InvolvedObject.Namespace,
				"involvedObject.name":            e.InvolvedObject.Name,
				"involvedObject.uid":             string(e.InvolvedObject.UID),
				"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
				"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
				"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
				"reason":                         e.Reason,
				"reportingComponent":             e.ReportingController,
				"source":                         source,
				"type":                           e.Type,
			}
		},
		columns: []metav1.TableColumnDefinition{
			col("Last Seen", "string", "Time when last event occurred", 0),
			col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future.", 0),
			col("Reason", "string", "Reason why this event was generated.", 0),
			col("Object", "string", "The object this Event is about.", 0),
			col("Subobject", "string", "The subobject this Event is about.", 1),
			col("Source", "string", "The component reporting this event.", 1),
			col("Message", "string", "A human-readable description of the status of this operation.", 0),
			col("First Seen", "string", "Time when first event occurred", 1),
			col("Count", "string", "Number of times this event has occurred.", 1),
			{Name: "Name", Type: "string", Format: "name", Priority: 1, Description: nameColumn.Description},
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			e := obj.(*corev1.Event)
			last := e.LastTimestamp
			if last.IsZero() {
				last = metav1.NewTime(e.EventTime.Time)
			}
			if last.IsZero() {
				last = e.CreationTimestamp
			}
			first := e.FirstTimestamp
			if first.IsZero() {
				first = last
			}
			object := strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
			source := e.Source.Component
			if source == "" {
				source = e.ReportingController
			}
			if e.Source.Host != "" {
				source += ", " + e.Source.Host
			}
			count := e.Count
			if count == 0 && e.Series != nil {
				count = e.Series.Count
			}
			return []any{Age(last, now), e.Type, e.Reason, object, e.InvolvedObject.FieldPath, source,
				strings.TrimSpace(e.Message), Age(first, now), fmt.Sprint(count), e.Name}
		},
	}
}
