package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// maxLogSize is how large a component's log grows before it is rotated:
// the supervisor keeps the current file and one previous (<name>.log.1).
const maxLogSize = 10 << 20

// rotatingLog appends to a log file and rotates it by size: a write that
// would take the file past max first renames it to path.1, replacing the
// previous one, and starts a new file. The supervisor copies each
// component's output into one through a pipe, so no process ever holds
// the file itself and a rotated file is never written to again.
type rotatingLog struct {
	path string
	max  int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

// openRotatingLog opens path for appending, counting what it holds
// already.
func openRotatingLog(path string, limit int64) (*rotatingLog, error) {
	l := &rotatingLog{path: path, max: limit}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *rotatingLog) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first when p would take the file past max. A
// write larger than max goes whole into a new file.
func (l *rotatingLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, fs.ErrClosed
	}
	if l.size > 0 && l.size+int64(len(p)) > l.max {
		if err := l.rotate(); err != nil {
			return 0, fmt.Errorf("rotate %s: %w", l.path, err)
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate renames the file to path.1 and opens a new one.
func (l *rotatingLog) rotate() error {
	if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	old := l.f
	if err := l.open(); err != nil {
		l.f = old
		return err
	}
	return old.Close()
}

// Close closes the file; later writes fail.
func (l *rotatingLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
