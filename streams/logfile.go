package streams

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotLineStart is returned for an offset that is not where a line starts.
var ErrNotLineStart = errors.New("offset is not the start of a line")

// ErrBeyondEnd is returned for an offset past the log's whole lines.
var ErrBeyondEnd = errors.New("offset is beyond the end of the log")

// LogEnd returns the offset just after the log's last whole line.
func LogEnd(path string) (int64, error) {
	end, err := lastLineEnd(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return end, err
}

// CheckOffset verifies that off is a line start within the log's whole lines.
func CheckOffset(path string, off int64) error {
	end, err := LogEnd(path)
	if err != nil {
		return err
	}
	if off < 0 || off > end {
		return fmt.Errorf("%w: %d > %d", ErrBeyondEnd, off, end)
	}
	if off == 0 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off-1); err != nil {
		return err
	}
	if b[0] != '\n' {
		return ErrNotLineStart
	}
	return nil
}

// TailOffset returns where the last n whole lines before end begin.
func TailOffset(path string, n int, end int64) (int64, error) {
	if n <= 0 {
		return end, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	pos := end - 1 // skip the newline that ends the last line
	for pos > 0 {
		size := min(int64(len(buf)), pos)
		if _, err := f.ReadAt(buf[:size], pos-size); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		chunk := buf[:size]
		for {
			i := bytes.LastIndexByte(chunk, '\n')
			if i < 0 {
				break
			}
			n--
			if n == 0 {
				return pos - size + int64(i) + 1, nil
			}
			chunk = chunk[:i]
		}
		pos -= size
	}
	return 0, nil
}

// CountLines counts the lines in the first end bytes of the log.
func CountLines(path string, end int64) (int64, error) {
	n, err := countNewlines(path, 0, end)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return n, err
}
