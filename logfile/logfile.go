// Package logfile is the on-disk format of a run's log, shared by the
// runner that writes it and the readers that serve it: the log itself
// (whole lines, each ending in \n, masked and split before they are
// written) and the files beside it.
//
//	ID.log          the output
//	ID.log.idx      sparse line index: little-endian uint64 offsets where
//	                lines 1, 1+IndexEvery, 1+2·IndexEvery, … start
//	ID.log.times    arrival times: TimeRecordSize-byte records, the
//	                little-endian uint64 number of the first line a write
//	                completed and the int64 Unix milliseconds it arrived
//	ID.log.final    the run's final record, written before the database's
//	ID.log.partial  the unfinished last line, kept for a kill -9
//
// The index and the times help readers; a missing or damaged one is
// rebuilt or done without, never trusted past what the log holds.
package logfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"unicode/utf8"
)

// MaxLineBytes is the longest line written whole; a longer one is split
// into pieces of at most this many bytes, each ending in SplitMarker.
const MaxLineBytes = 4 << 20

// SplitMarker ends every piece of a line that was split for length.
const SplitMarker = " \u23CE[shiplog: line longer than 4 MiB split here]"

// CutMarker is the last line of a log cut at its job's max_log_size.
const CutMarker = "[shiplog: the log was cut here at max_log_size; the rest of the output was discarded]"

// Note is a line of shiplog's own in a log, such as why a run stopped:
// "[shiplog: canceled by alice at …]". Pages show such lines apart from the
// job's output.
func Note(text string) string { return "[shiplog: " + text + "]" }

// MaxPartialShown bounds the unfinished last line sent to viewers; see
// PartialTail.
const MaxPartialShown = 64 << 10

// PartialTail is what viewers are shown of an unfinished line p: all of
// it, or its last MaxPartialShown bytes, from a carriage return (a
// redraw) where there is one, else from a character's start. A redrawn
// progress bar keeps every redraw in its line until the newline.
func PartialTail(p []byte) []byte {
	if len(p) <= MaxPartialShown {
		return p
	}
	p = p[len(p)-MaxPartialShown:]
	if i := bytes.IndexByte(p, '\r'); i >= 0 {
		return p[i:]
	}
	for len(p) > 0 && !utf8.RuneStart(p[0]) {
		p = p[1:]
	}
	return p
}

// IndexEvery is the spacing, in lines, of the entries in ID.log.idx.
const IndexEvery = 4096

// TimeRecordSize is the size of one record of ID.log.times.
const TimeRecordSize = 16

// Paths of the files beside the log at path.
func IndexPath(path string) string   { return path + ".idx" }
func TimesPath(path string) string   { return path + ".times" }
func FinalPath(path string) string   { return path + ".final" }
func PartialPath(path string) string { return path + ".partial" }

// Sidecars returns the paths of every file beside the log at path.
func Sidecars(path string) []string {
	return []string{IndexPath(path), TimesPath(path), FinalPath(path), PartialPath(path)}
}

// AppendIndex appends the index entry for a line starting at off.
func AppendIndex(dst []byte, off int64) []byte {
	return binary.LittleEndian.AppendUint64(dst, uint64(off))
}

// IndexEntry returns the offset held by the index entry at the start of b
// (at least 8 bytes).
func IndexEntry(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }

// TimeRecord is one record of ID.log.times: line Line, and those after it
// up to the next record's, arrived at At (Unix milliseconds).
type TimeRecord struct {
	Line int64
	At   int64
}

// Encode returns r as it is stored.
func (r TimeRecord) Encode() [TimeRecordSize]byte {
	var b [TimeRecordSize]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(r.Line))
	binary.LittleEndian.PutUint64(b[8:], uint64(r.At))
	return b
}

// DecodeTime reads the record at the start of b (at least TimeRecordSize
// bytes).
func DecodeTime(b []byte) TimeRecord {
	return TimeRecord{Line: int64(binary.LittleEndian.Uint64(b[:8])), At: int64(binary.LittleEndian.Uint64(b[8:16]))}
}

// TimesWriter appends to ID.log.times as the lines of a log are written:
// a record for the first line of a write, only when its millisecond is not
// the last record's, so a burst of lines costs one record. Write it before
// the lines, so a reader who sees a line finds its time. Like the index,
// it is a help: after a failed write it writes nothing more.
type TimesWriter struct {
	f      *os.File
	last   int64 // the millisecond of the last record; -1: none
	failed bool
}

// NewTimesWriter appends to f, whose last record (if any) said last.
func NewTimesWriter(f *os.File, last int64) *TimesWriter {
	return &TimesWriter{f: f, last: last}
}

// Stamp records that line, and those after it in the same write, arrived
// at ms (Unix milliseconds).
func (w *TimesWriter) Stamp(line, ms int64) {
	if w == nil || w.failed || ms == w.last {
		return
	}
	rec := TimeRecord{Line: line, At: ms}.Encode()
	if _, err := w.f.Write(rec[:]); err != nil {
		w.failed = true
		return
	}
	w.last = ms
}

// Close closes the file it writes to.
func (w *TimesWriter) Close() {
	if w != nil {
		w.f.Close()
	}
}

// Count returns the bytes and lines (newlines) r holds.
func Count(r io.Reader) (size, lines int64, err error) {
	buf := make([]byte, 256<<10)
	for {
		n, err := r.Read(buf)
		size += int64(n)
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			return size, lines, nil
		}
		if err != nil {
			return size, lines, err
		}
	}
}
