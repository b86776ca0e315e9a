package apiserver

import (
	"errors"
	goruntime "runtime"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// decodeBatch is how many stored objects a list decodes at a time, split
// among up to GOMAXPROCS goroutines: decoding the stored JSON is most of
// the CPU of a large LIST in either media type (JSON or protobuf), and a
// batch bounds how many decoded objects that do not match the selectors
// are held at once.
const decodeBatch = 1024

// minParallelDecode is the smallest batch decoded by more than one
// goroutine.
const minParallelDecode = 256

// decodeAll decodes kind's stored objects objs, in order, into out (of the
// same length).
func decodeAll(kind *registry.Kind, objs []*state.Object, out []runtime.Object) error {
	workers := min(goruntime.GOMAXPROCS(0), len(objs)/(minParallelDecode/2))
	if len(objs) < minParallelDecode || workers <= 1 {
		for i, o := range objs {
			obj, err := kind.Decode(o)
			if err != nil {
				return err
			}
			out[i] = obj
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	chunk := (len(objs) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(objs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				obj, err := kind.Decode(objs[i])
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = obj
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// collectAll returns every matching object after the ID after (a list
// without a limit), decoded a batch at a time, and the ID of the last one.
func (s *APIServer) collectAll(req *request, snap *state.Snapshot, opts *listOptions, after string) ([]runtime.Object, string, error) {
	var (
		items   []runtime.Object
		lastID  string
		derr    error
		batch   = make([]*state.Object, 0, decodeBatch)
		decoded = make([]runtime.Object, decodeBatch)
	)
	flush := func() error {
		out := decoded[:len(batch)]
		if err := decodeAll(req.kind, batch, out); err != nil {
			return err
		}
		for i, obj := range out {
			if opts.matches(req.kind, obj) {
				items = append(items, obj)
				lastID = batch[i].ID
			}
			out[i] = nil
		}
		batch = batch[:0]
		return nil
	}
	snap.List(req.kind.StorageResource(), req.namespace(), after, func(o *state.Object) bool {
		batch = append(batch, o)
		if len(batch) == decodeBatch {
			derr = flush()
		}
		return derr == nil
	})
	if derr == nil && len(batch) > 0 {
		derr = flush()
	}
	return items, lastID, derr
}
