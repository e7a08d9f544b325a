package streams

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/shiplog/shiplog/logfile"
)

// ErrNoSuchLine is returned for a line number past the end of the log.
var ErrNoSuchLine = errors.New("no such line")

// lineIndex returns the known line-start offsets of the log at path, up to
// end: what the index file holds, extended by scanning the log where it
// stops short (an old log, or one being written).
func lineIndex(path string, end int64) ([]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return []int64{0}, nil
		}
		return nil, err
	}
	defer f.Close()
	data, _ := os.ReadFile(logfile.IndexPath(path)) // missing or short: rebuilt below
	idx := make([]int64, 0, len(data)/8+1)
	var b [1]byte
	for i := 0; i+8 <= len(data); i += 8 {
		off := logfile.IndexEntry(data[i:])
		if off > end || (len(idx) > 0 && off <= idx[len(idx)-1]) {
			break // written past what is readable now, or damaged
		}
		if off > 0 {
			if _, err := f.ReadAt(b[:], off-1); err != nil || b[0] != '\n' {
				break // not a line start: damaged
			}
		} else if i > 0 {
			break
		}
		idx = append(idx, off)
	}
	if len(idx) == 0 || idx[0] != 0 {
		idx = []int64{0}
	}
	pos := idx[len(idx)-1]
	r := getReader(io.NewSectionReader(f, pos, end-pos))
	defer putReader(r)
	lines := 0
	for {
		chunk, err := r.ReadSlice('\n')
		pos += int64(len(chunk))
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			lines++
			if lines == logfile.IndexEvery && pos < end {
				idx = append(idx, pos)
				lines = 0
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			break
		}
	}
	return idx, nil
}

// LineNumber returns the 1-based number of the line starting at off.
func LineNumber(path string, off int64) (int64, error) {
	if off == 0 {
		return 1, nil
	}
	idx, err := lineIndex(path, off)
	if err != nil {
		return 0, err
	}
	k := len(idx) - 1
	for k > 0 && idx[k] > off {
		k--
	}
	n, err := countNewlines(path, idx[k], off)
	if err != nil {
		return 0, err
	}
	return int64(k)*logfile.IndexEvery + 1 + n, nil
}

// LineOffset returns where line n (1-based) starts in a log whose whole
// lines end at end.
func LineOffset(path string, n, end int64) (int64, error) {
	if n < 1 {
		return 0, fmt.Errorf("%w: %d", ErrNoSuchLine, n)
	}
	idx, err := lineIndex(path, end)
	if err != nil {
		return 0, err
	}
	k := min(int((n-1)/logfile.IndexEvery), len(idx)-1)
	skip := n - 1 - int64(k)*logfile.IndexEvery
	pos := idx[k]
	if skip == 0 {
		if pos > end || (pos == end && n > 1) {
			return 0, fmt.Errorf("%w: %d", ErrNoSuchLine, n)
		}
		return pos, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := getReader(io.NewSectionReader(f, pos, end-pos))
	defer putReader(r)
	for skip > 0 {
		chunk, err := r.ReadSlice('\n')
		pos += int64(len(chunk))
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			skip--
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
	}
	if skip > 0 || pos >= end {
		return 0, fmt.Errorf("%w: %d", ErrNoSuchLine, n)
	}
	return pos, nil
}

func countNewlines(path string, from, to int64) (int64, error) {
	if to <= from {
		return 0, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := getReader(io.NewSectionReader(f, from, to-from))
	defer putReader(r)
	var n int64
	for {
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			n++
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
