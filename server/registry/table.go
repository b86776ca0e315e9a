package registry

import (
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

var (
	nameColumn = metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
		Description: "Name must be unique within a namespace. Cannot be updated."}
	ageColumn = metav1.TableColumnDefinition{Name: "Age", Type: "string",
		Description: "CreationTimestamp is a timestamp representing the server time when this object was created."}
)

// col is a short way to write a column definition.
func col(name, typ, desc string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: desc, Priority: priority}
}

// Columns returns the kind's Table column definitions (priority > 0 columns
// are shown by kubectl only with -o wide).
func (k *Kind) Columns() []metav1.TableColumnDefinition {
	return append([]metav1.TableColumnDefinition(nil), k.columns...)
}

// Cells returns the row cells of obj, one per column.
func (k *Kind) Cells(obj runtime.Object, now time.Time) []any { return k.cells(obj, now) }

// Age renders the time since t as kubectl does ("5m", "3d2h"), "<unknown>"
// for a zero time.
func Age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// orNone returns s, or "<none>" when s is empty.
func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// selectorString renders a label map as a selector ("a=b,c=d").
func selectorString(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	return labels.SelectorFromSet(m).String()
}

// labelSelectorString renders a metav1.LabelSelector.
func labelSelectorString(s *metav1.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return "<error>"
	}
	if sel.Empty() {
		return "<none>"
	}
	return sel.String()
}

// joinSorted joins the keys of a set in sorted order.
func joinSorted(set map[string]bool, sep string) string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, sep)
}
