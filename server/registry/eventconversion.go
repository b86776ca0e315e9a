package registry

import (
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
)

// events.k8s.io/v1 Events are core/v1 Events seen through another
// version, as in kube-apiserver: one store ("events"), so an event written
// through either API is listed, watched and field-selected through both.
// The field names differ: regarding is involvedObject, note is message,
// reportingController is reportingComponent, deprecatedSource,
// deprecatedFirstTimestamp, deprecatedLastTimestamp and deprecatedCount are
// source, firstTimestamp, lastTimestamp and count.

// EventToV1 converts a stored (core/v1) Event to events.k8s.io/v1.
func EventToV1(in *corev1.Event) *eventsv1.Event {
	in = in.DeepCopy()
	out := &eventsv1.Event{
		ObjectMeta:               in.ObjectMeta,
		EventTime:                in.EventTime,
		ReportingController:      in.ReportingController,
		ReportingInstance:        in.ReportingInstance,
		Action:                   in.Action,
		Reason:                   in.Reason,
		Regarding:                in.InvolvedObject,
		Related:                  in.Related,
		Note:                     in.Message,
		Type:                     in.Type,
		DeprecatedSource:         in.Source,
		DeprecatedFirstTimestamp: in.FirstTimestamp,
		DeprecatedLastTimestamp:  in.LastTimestamp,
		DeprecatedCount:          in.Count,
	}
	if in.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	out.APIVersion, out.Kind = eventsv1.SchemeGroupVersion.String(), "Event"
	return out
}

// EventFromV1 converts an events.k8s.io/v1 Event to the stored core/v1 form.
func EventFromV1(in *eventsv1.Event) *corev1.Event {
	in = in.DeepCopy()
	out := &corev1.Event{
		ObjectMeta:          in.ObjectMeta,
		InvolvedObject:      in.Regarding,
		Reason:              in.Reason,
		Message:             in.Note,
		Source:              in.DeprecatedSource,
		FirstTimestamp:      in.DeprecatedFirstTimestamp,
		LastTimestamp:       in.DeprecatedLastTimestamp,
		Count:               in.DeprecatedCount,
		Type:                in.Type,
		EventTime:           in.EventTime,
		Action:              in.Action,
		Related:             in.Related,
		ReportingController: in.ReportingController,
		ReportingInstance:   in.ReportingInstance,
	}
	if in.Series != nil {
		out.Series = &corev1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	out.APIVersion, out.Kind = corev1.SchemeGroupVersion.String(), "Event"
	return out
}

// addEventConversions registers core/v1 <-> events.k8s.io/v1 in scheme
// (the field manager converts managedFields entries of either version).
func addEventConversions(scheme *runtime.Scheme) error {
	if err := scheme.AddConversionFunc((*corev1.Event)(nil), (*eventsv1.Event)(nil),
		func(a, b any, _ conversion.Scope) error {
			*b.(*eventsv1.Event) = *EventToV1(a.(*corev1.Event))
			return nil
		}); err != nil {
		return err
	}
	return scheme.AddConversionFunc((*eventsv1.Event)(nil), (*corev1.Event)(nil),
		func(a, b any, _ conversion.Scope) error {
			*b.(*corev1.Event) = *EventFromV1(a.(*eventsv1.Event))
			return nil
		})
}

func eventV1Stored() *storedVersion {
	return &storedVersion{
		gvk:        corev1.SchemeGroupVersion.WithKind("Event"),
		newObject:  func() runtime.Object { return &corev1.Event{} },
		fromStored: func(obj runtime.Object) (runtime.Object, error) { return EventToV1(obj.(*corev1.Event)), nil },
		toStored:   func(obj runtime.Object) (runtime.Object, error) { return EventFromV1(obj.(*eventsv1.Event)), nil },
	}
}
