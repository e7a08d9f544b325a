package streams

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/shiplog/shiplog/logfile"
)

// LineTime says that line Line, and those after it up to the next LineTime's
// line, arrived at At (Unix milliseconds).
type LineTime = logfile.TimeRecord

// timesFile is an open ID.log.times.
type timesFile struct {
	f *os.File
	n int64 // records
}

func openTimes(logPath string) (*timesFile, error) {
	f, err := os.Open(logfile.TimesPath(logPath))
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &timesFile{f: f, n: st.Size() / logfile.TimeRecordSize}, nil
}

func (t *timesFile) at(k int64) (LineTime, error) {
	var b [logfile.TimeRecordSize]byte
	if _, err := t.f.ReadAt(b[:], k*logfile.TimeRecordSize); err != nil {
		return LineTime{}, err
	}
	return logfile.DecodeTime(b[:]), nil
}

// seek returns the number of the last record at or before line n, or 0 when
// there is none: the first record covers line 1.
func (t *timesFile) seek(n int64) int64 {
	var failed bool
	k := sort.Search(int(t.n), func(i int) bool {
		r, err := t.at(int64(i))
		failed = failed || err != nil
		return err != nil || r.Line > n
	})
	if failed || k == 0 {
		return 0
	}
	return int64(k - 1)
}

// LineTimes returns the records covering lines from..to of the log at path,
// in order: the one in force at from, then each that starts a later line up
// to to. A log written before line times existed has none: nil, no error.
func LineTimes(path string, from, to int64) ([]LineTime, error) {
	t, err := openTimes(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open line times: %w", err)
	}
	defer t.f.Close()
	var out []LineTime
	r := bufio.NewReaderSize(io.NewSectionReader(t.f, t.seek(from)*logfile.TimeRecordSize, (t.n)*logfile.TimeRecordSize), 64<<10)
	var b [logfile.TimeRecordSize]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			break
		}
		rec := logfile.DecodeTime(b[:])
		if rec.Line > to {
			break
		}
		if len(out) > 0 && rec.Line <= out[len(out)-1].Line {
			break // damaged: records only move forward
		}
		out = append(out, rec)
	}
	return out, nil
}

// Stamper gives the arrival time of each line of a log, read in order.
type Stamper struct {
	t    *timesFile
	next int64    // the record to read next
	cur  LineTime // in force
	upto int64    // the line where the next record starts; 0: none
	line int64
	buf  []byte
}

// NewStamper returns a Stamper for the log at path whose next line is number
// first. Open it after reading the lines: their times were written first.
func NewStamper(path string, first int64) *Stamper {
	s := &Stamper{line: first}
	t, err := openTimes(path)
	if err != nil {
		return s // no times: lines are stamped as unknown
	}
	s.t = t
	s.next = t.seek(first)
	s.advance()
	return s
}

// advance moves to the record after the current one.
func (s *Stamper) advance() {
	s.upto = 0
	for s.next < s.t.n {
		r, err := s.t.at(s.next)
		if err != nil {
			return
		}
		if r.Line > s.line {
			s.upto = r.Line
			return
		}
		s.cur = r
		s.next++
	}
}

// Stamp returns the prefix for the next line: an RFC 3339 time in UTC with
// milliseconds and a space, or a dash where the time is unknown. It is valid
// until the next call.
func (s *Stamper) Stamp() []byte {
	if s.t != nil && s.upto != 0 && s.line >= s.upto {
		s.advance()
	}
	s.line++
	s.buf = s.buf[:0]
	if s.t == nil || s.cur.Line == 0 {
		return append(s.buf, "-                        "...)
	}
	s.buf = time.UnixMilli(s.cur.At).UTC().AppendFormat(s.buf, "2006-01-02T15:04:05.000Z07:00")
	return append(s.buf, ' ')
}

// Close releases the times file.
func (s *Stamper) Close() {
	if s.t != nil {
		s.t.f.Close()
	}
}

// WriteStamped writes the whole lines of the log at path between from and
// end, whose first is line number first, each prefixed with its arrival time
// (see the README: like docker logs -t).
func WriteStamped(w io.Writer, path string, from, end, first int64) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	st := NewStamper(path, first)
	defer st.Close()
	r := getReader(io.NewSectionReader(f, from, end-from))
	defer putReader(r)
	bw := bufio.NewWriterSize(w, 64<<10)
	start := true
	for {
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 {
			if start {
				if _, werr := bw.Write(st.Stamp()); werr != nil {
					return werr
				}
			}
			if _, werr := bw.Write(chunk); werr != nil {
				return werr
			}
			start = chunk[len(chunk)-1] == '\n'
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return bw.Flush()
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
	}
}
