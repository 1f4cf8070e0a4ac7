//go:build !unix

package store

import "os"

// flockNB is a no-op where bbolt does not use flock.
func flockNB(*os.File) error { return nil }
