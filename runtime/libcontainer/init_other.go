//go:build !linux

package libcontainer

// InitIfRequested does nothing where there are no Linux containers.
func InitIfRequested() {}
