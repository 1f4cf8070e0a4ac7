package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// readWorkerID returns the id kept in path, or 0 when there is none yet.
func readWorkerID(path string) (uint64, error) {
	if path == "" {
		return 0, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read worker id: %w", err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("worker id file %s: %q is not an id", path, strings.TrimSpace(string(b)))
	}
	return id, nil
}

// writeWorkerID keeps the id in path, replacing the file atomically.
func writeWorkerID(path string, id uint64) error {
	if path == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".worker-id-*")
	if err != nil {
		return fmt.Errorf("write worker id: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "%d\n", id); err != nil {
		tmp.Close()
		return fmt.Errorf("write worker id: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write worker id: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write worker id: %w", err)
	}
	return nil
}
