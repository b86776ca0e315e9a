package apiserver

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// toTable renders objs as a metav1.Table with the kind's columns. Row
// objects follow includeObject: PartialObjectMetadata (default), the full
// object, or none.
func (s *APIServer) toTable(req *request, out output, objs []runtime.Object, lm metav1.ListMeta, headers bool) (*metav1.Table, error) {
	t := &metav1.Table{
		TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: out.metaAPIVersion()},
		ListMeta: lm,
		Rows:     make([]metav1.TableRow, 0, len(objs)),
	}
	if headers {
		t.ColumnDefinitions = req.kind.Columns()
	}
	now := s.now()
	for _, obj := range objs {
		row := metav1.TableRow{Cells: req.kind.Cells(obj, now)}
		var embed any
		switch out.includeObject {
		case metav1.IncludeObject:
			embed = obj
		case metav1.IncludeNone:
		default:
			embed = partialMetadata(obj, out.metaVersion)
		}
		if embed != nil {
			b, err := json.Marshal(embed)
			if err != nil {
				return nil, err
			}
			row.Object = runtime.RawExtension{Raw: b}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}
