package proxy

import "golang.org/x/sys/unix"

var errExist = unix.EEXIST
