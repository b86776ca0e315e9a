package agent

// DirMounter keeps memory-backed volumes (emptyDir medium Memory, secret
// and projected volumes) as plain directories: nothing is mounted. Hollow
// nodes (--runtime fake) use it, as kubemark's hollow kubelets use a fake
// mounter: their pods' volumes need no tmpfs, and a killed hollow node
// leaves no mount behind.
type DirMounter struct{}

// MountTmpfs does nothing: dir stays a directory.
func (DirMounter) MountTmpfs(dir string, sizeBytes int64) error { return nil }

// UnmountAll does nothing: nothing was mounted.
func (DirMounter) UnmountAll(dir string) error { return nil }
