package snapshot_test

import "github.com/skiff-io/skiff/fsm/state"

func fsmKey(resource, name string) state.Key {
	return state.Key{Resource: resource, Namespace: "default", Name: name}
}
