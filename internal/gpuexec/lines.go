package gpuexec

import (
	"bytes"
	"io"
	"sync"
)

// lineWriter splits what it is written into lines of at most max bytes and hands each to fn.
// A longer line is dropped whole (counted), so one runaway print cannot exhaust memory.
type lineWriter struct {
	max        int
	fn         func(line []byte)
	buf        []byte
	discarding bool
	dropped    int
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !w.discarding {
			if len(w.buf)+len(chunk) > w.max {
				w.discarding = true
				w.dropped++
				w.buf = w.buf[:0]
			} else {
				w.buf = append(w.buf, chunk...)
			}
		}
		if i < 0 {
			break
		}
		if !w.discarding {
			w.fn(bytes.TrimSuffix(w.buf, []byte("\r")))
		}
		w.buf, w.discarding = w.buf[:0], false
		p = p[i+1:]
	}
	return n, nil
}

// flush hands over a final line that had no newline.
func (w *lineWriter) flush() {
	if !w.discarding && len(w.buf) > 0 {
		w.fn(w.buf)
	}
	w.buf, w.discarding = nil, false
}

// tailBuffer keeps the last max bytes written to it, optionally copying everything to out.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
	out io.Writer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.out != nil {
		// The copy is best effort: a failing log must not block or fail the training run.
		_, _ = t.out.Write(p)
	}
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return len(p), nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
