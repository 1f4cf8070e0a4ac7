package worker

import (
	"fmt"
	"os"
)

// CheckWritable makes sure the worker can create files in dir (its id, spilled points),
// so that a permission problem stops it before it registers rather than after.
func CheckWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("%s is not writable by uid %d: %w", dir, os.Getuid(), err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
