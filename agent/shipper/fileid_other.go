//go:build !linux

package shipper

import "os"

// fileID is a file's identity; without inodes, the modification time's
// nanoseconds stand in (a rotated file is then found by its name only).
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func idOf(fi os.FileInfo) fileID { return fileID{Ino: uint64(fi.ModTime().UnixNano())} }
