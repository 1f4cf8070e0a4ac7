//go:build unix

package store

import (
	"os"
	"syscall"
)

// flockNB takes and drops the lock bbolt takes, without waiting.
func flockNB(f *os.File) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return err
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
