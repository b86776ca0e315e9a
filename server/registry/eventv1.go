package registry

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxEventNoteBytes is the size limit of an events.k8s.io Event's note.
const maxEventNoteBytes = 1024

// Events (events.k8s.io/v1): core/v1 events served at another version
// (eventconversion.go); recorders create or update them by name.
func eventV1Kind() *Kind {
	return &Kind{
		storedAs:            eventV1Stored(),
		GVK:                 eventsv1.SchemeGroupVersion.WithKind("Event"),
		Resource:            "events",
		Namespaced:          true,
		ShortNames:          []string{"ev"},
		AllowCreateOnUpdate: true,
		newObject:           func() runtime.Object { return &eventsv1.Event{} },
		newList:             func() runtime.Object { return &eventsv1.EventList{} },
		validate:            func(obj runtime.Object) field.ErrorList { return validateEventV1(obj.(*eventsv1.Event)) },
		fieldNames: []string{"regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "regarding.apiVersion",
			"regarding.resourceVersion", "regarding.fieldPath", "reason", "reportingController", "type",
			"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "source"},
		fields: func(obj runtime.Object) fields.Set {
			e := obj.(*eventsv1.Event)
			r := e.Regarding
			set := fields.Set{
				"regarding.kind": r.Kind, "regarding.namespace": r.Namespace, "regarding.name": r.Name,
				"regarding.uid": string(r.UID), "regarding.apiVersion": r.APIVersion,
				"regarding.resourceVersion": r.ResourceVersion, "regarding.fieldPath": r.FieldPath,
				"reason": e.Reason, "reportingController": e.ReportingController, "type": e.Type,
				"source": e.ReportingController,
			}
			// The core/v1 names of the same fields, as kube-apiserver
			// converts them.
			set["involvedObject.kind"], set["involvedObject.namespace"] = r.Kind, r.Namespace
			set["involvedObject.name"], set["involvedObject.uid"] = r.Name, string(r.UID)
			return set
		},
		columns: []metav1.TableColumnDefinition{
			col("Last Seen", "string", "Time when last event occurred", 0),
			col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future.", 0),
			col("Reason", "string", "Reason why this event was generated.", 0),
			col("Object", "string", "The object this Event is about.", 0),
			col("Message", "string", "A human-readable description of the status of this operation.", 0),
			{Name: "Name", Type: "string", Format: "name", Priority: 1, Description: nameColumn.Description},
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			e := obj.(*eventsv1.Event)
			last := e.EventTime.Time
			if e.Series != nil {
				last = e.Series.LastObservedTime.Time
			} else if !e.DeprecatedLastTimestamp.IsZero() {
				last = e.DeprecatedLastTimestamp.Time
			}
			if last.IsZero() {
				last = e.CreationTimestamp.Time
			}
			object := strings.ToLower(e.Regarding.Kind) + "/" + e.Regarding.Name
			return []any{Age(metav1.NewTime(last), now), e.Type, e.Reason, object, strings.TrimSpace(e.Note), e.Name}
		},
	}
}

func validateEventV1(e *eventsv1.Event) field.ErrorList {
	var errs field.ErrorList
	if e.EventTime.IsZero() {
		errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
	}
	if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
		errs = append(errs, field.Invalid(field.NewPath("type"), e.Type, fmt.Sprintf("has invalid value: %v", e.Type)))
	}
	if e.ReportingController == "" {
		errs = append(errs, field.Required(field.NewPath("reportingController"), ""))
	} else {
		for _, msg := range utilvalidation.IsQualifiedName(e.ReportingController) {
			errs = append(errs, field.Invalid(field.NewPath("reportingController"), e.ReportingController, msg))
		}
	}
	if e.ReportingInstance == "" {
		errs = append(errs, field.Required(field.NewPath("reportingInstance"), ""))
	} else if len(e.ReportingInstance) > 128 {
		errs = append(errs, field.Invalid(field.NewPath("reportingInstance"), "", "can have at most 128 characters"))
	}
	if e.Action == "" {
		errs = append(errs, field.Required(field.NewPath("action"), ""))
	} else if len(e.Action) > 128 {
		errs = append(errs, field.Invalid(field.NewPath("action"), "", "can have at most 128 characters"))
	}
	if e.Reason == "" {
		errs = append(errs, field.Required(field.NewPath("reason"), ""))
	} else if len(e.Reason) > 128 {
		errs = append(errs, field.Invalid(field.NewPath("reason"), "", "can have at most 128 characters"))
	}
	if len(e.Note) > maxEventNoteBytes {
		errs = append(errs, field.Invalid(field.NewPath("note"), "", fmt.Sprintf("can have at most %v characters", maxEventNoteBytes)))
	}
	return errs
}
