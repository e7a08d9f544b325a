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

import "encoding/binary"

// MaxLineBytes is the longest line written whole; a longer one is split
// into pieces of at most this many bytes, each ending in SplitMarker.
const MaxLineBytes = 4 << 20

// SplitMarker ends every piece of a line that was split for length.
const SplitMarker = " \u23CE[shiplog: line longer than 4 MiB split here]"

// CutMarker is the last line of a log cut at its job's max_log_size.
const CutMarker = "[shiplog: the log was cut here at max_log_size; the rest of the output was discarded]"

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
