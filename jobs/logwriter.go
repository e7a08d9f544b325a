package jobs

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// MaxLineBytes is the longest line written whole; a longer one is split into
// pieces of this size, each marked so the split is never silent.
const MaxLineBytes = 4 << 20

// SplitMarker ends every piece of a line that was split for length.
const SplitMarker = " \u23CE[shiplog: line longer than 4 MiB split here]"

// CutMarker is the last line of a log cut at its job's max_log_size.
const CutMarker = "[shiplog: the log was cut here at max_log_size; the rest of the output was discarded]"

// IndexEvery is the spacing of the sparse line index written beside each
// log (ID.log.idx): the little-endian uint64 offsets where lines 1, 1+N,
// 1+2N, … start, so any line's number is found without reading the log from
// its start. Package streams reads it.
const IndexEvery = 4096

// TimesRecordSize is the size of one record of the line times written beside
// each log (ID.log.times): the little-endian uint64 number of the first line
// completed by a write, then the int64 Unix milliseconds when it arrived. A
// record covers its line and those after it up to the next record's, so a
// burst of lines costs one record. Package streams reads it.
const TimesRecordSize = 16

// minMaskLen is the shortest value ::add-mask:: accepts: masking one or two
// characters would destroy the log and protect nothing.
const minMaskLen = 3

// logWriter turns a run's raw output into its log file: whole lines only,
// masks applied, workflow commands recognised.
type logWriter struct {
	f       *os.File
	pending []byte // start of a line whose newline has not arrived
	out     []byte // reused output buffer
	onCmd   func(Command, int64)
	cmds    []lineCmd // commands in out, acted on once their lines are written
	err     error
	batch   int64 // lines in out, not yet committed
	idx     *os.File
	idxOut  []byte // index entries for the lines in out
	limit   int64  // bytes; 0: none
	cut     bool   // the limit was reached: output is discarded
	times   *os.File
	partial *os.File // ID.log.partial: the unfinished last line, masked
	partLen int      // bytes in partial now
	now     func() time.Time
	lastMs  int64 // time of the last times record

	mu       sync.Mutex // guards the counters read by other goroutines
	bytes    int64
	lines    int64
	replacer *strings.Replacer
	masks    []string
}

// lineCmd is a workflow command and the number of the line that holds it.
type lineCmd struct {
	cmd  Command
	line int64
}

func newLogWriter(f, idx *os.File, secrets []string, onCmd func(Command, int64)) *logWriter {
	w := &logWriter{f: f, idx: idx, onCmd: onCmd, now: time.Now, lastMs: -1}
	for _, s := range secrets {
		w.addMask(s)
	}
	return w
}

// maskForms returns v and the encodings a naive script might print it in.
func maskForms(v string) []string {
	forms := []string{v,
		base64.StdEncoding.EncodeToString([]byte(v)),
		base64.RawStdEncoding.EncodeToString([]byte(v)),
		base64.URLEncoding.EncodeToString([]byte(v)),
		base64.RawURLEncoding.EncodeToString([]byte(v)),
		url.QueryEscape(v), url.PathEscape(v),
		hex.EncodeToString([]byte(v)),
	}
	return forms
}

func (w *logWriter) addMask(v string) {
	// A multi-line secret is masked line by line, as it appears in the log.
	for _, part := range strings.Split(v, "\n") {
		part = strings.TrimSuffix(part, "\r")
		if len(part) < minMaskLen {
			continue
		}
		for _, f := range maskForms(part) {
			if len(f) >= minMaskLen && !containsString(w.masks, f) {
				w.masks = append(w.masks, f)
			}
		}
	}
	// Longest first, so a value containing another is masked whole.
	sort.Slice(w.masks, func(i, j int) bool { return len(w.masks[i]) > len(w.masks[j]) })
	pairs := make([]string, 0, 2*len(w.masks))
	for _, m := range w.masks {
		pairs = append(pairs, m, "***")
	}
	w.replacer = strings.NewReplacer(pairs...)
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Write consumes raw output. It never fails for the producer's sake: a write
// error is kept (see Err) and later output is discarded so the job can be
// stopped cleanly.
func (w *logWriter) Write(p []byte) {
	if w.cut {
		return
	}
	w.out = w.out[:0]
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.pending = append(w.pending, p...)
			for len(w.pending) >= MaxLineBytes {
				w.line(w.pending[:MaxLineBytes], true)
				w.pending = append(w.pending[:0], w.pending[MaxLineBytes:]...)
			}
			break
		}
		if len(w.pending) > 0 {
			w.pending = append(w.pending, p[:i]...)
			for len(w.pending) > MaxLineBytes {
				w.line(w.pending[:MaxLineBytes], true)
				w.pending = append(w.pending[:0], w.pending[MaxLineBytes:]...)
			}
			w.line(w.pending, false)
			w.pending = w.pending[:0]
		} else {
			l := p[:i]
			for len(l) > MaxLineBytes {
				w.line(l[:MaxLineBytes], true)
				l = l[MaxLineBytes:]
			}
			w.line(l, false)
		}
		p = p[i+1:]
	}
	w.flush()
	w.keepPartial()
}

// keepPartial writes the unfinished last line, masked, to the partial file,
// so a server killed before its newline arrives loses none of it (a restart
// appends it to the log). What could still become a secret, with the bytes
// yet to come, is held back.
func (w *logWriter) keepPartial() {
	if w.partial == nil || (len(w.pending) == 0 && w.partLen == 0) {
		return
	}
	var safe []byte
	if len(w.pending) > 0 && !bytes.HasPrefix(w.pending, []byte("::add-mask::")) {
		safe = w.pending
		if w.replacer != nil && len(w.masks) > 0 {
			safe = []byte(w.replacer.Replace(string(safe)))
		}
		safe = safe[:len(safe)-w.secretPrefixAtEnd(safe)]
	}
	if len(safe) == 0 && w.partLen == 0 {
		return
	}
	if _, err := w.partial.WriteAt(safe, 0); err != nil || w.partial.Truncate(int64(len(safe))) != nil {
		w.partial = nil // a help, like the index: the log goes on without it
		return
	}
	w.partLen = len(safe)
}

// secretPrefixAtEnd is the length of the longest end of b that is the start
// of a masked value: bytes that may yet turn out to be a secret.
func (w *logWriter) secretPrefixAtEnd(b []byte) int {
	hold := 0
	for _, m := range w.masks {
		for k := min(len(m)-1, len(b)); k > hold; k-- {
			if string(b[len(b)-k:]) == m[:k] {
				hold = k
				break
			}
		}
	}
	return hold
}

// Close writes a last line that had no newline.
func (w *logWriter) Close() {
	w.out = w.out[:0]
	if len(w.pending) > 0 {
		w.line(w.pending, false)
		w.pending = nil
	}
	w.flush()
	if w.partial != nil {
		_ = w.partial.Truncate(0) // the log has it now
		w.partLen = 0
	}
}

// line appends one processed line to the output buffer.
func (w *logWriter) line(l []byte, split bool) {
	cmd, isCmd := ParseCommand(l)
	if isCmd && cmd.Name == "add-mask" {
		w.mu.Lock()
		w.addMask(cmd.Value)
		w.mu.Unlock()
	}
	start := len(w.out)
	if n := w.lines + w.batch; n%IndexEvery == 0 {
		w.idxOut = binary.LittleEndian.AppendUint64(w.idxOut, uint64(w.bytes+int64(start)))
	}
	if w.replacer != nil && len(w.masks) > 0 {
		w.out = append(w.out, w.replacer.Replace(string(l))...)
	} else {
		w.out = append(w.out, l...)
	}
	if split {
		w.out = append(w.out, SplitMarker...)
	}
	w.out = append(w.out, '\n')
	w.batch++
	w.mu.Lock()
	n := w.lines + w.batch
	w.mu.Unlock()
	// Only a command line is parsed again, as written: masked, so no secret
	// reaches progress or annotations.
	if w.onCmd != nil && isCmd {
		if cmd, ok := ParseCommand(w.out[start : len(w.out)-1]); ok {
			w.cmds = append(w.cmds, lineCmd{cmd, n})
		}
	}
}

// flush writes the buffered whole lines with one write, so a reader of the
// file sees them arrive together. On a short write the file is cut back to
// its last whole line.
func (w *logWriter) flush() {
	if w.limit > 0 && !w.cut && w.bytes+int64(len(w.out)) > w.limit {
		w.cutOut()
	}
	batch := w.batch
	w.batch = 0
	idxOut := w.idxOut
	w.idxOut = w.idxOut[:0]
	cmds := w.cmds
	w.cmds = w.cmds[:0]
	if len(w.out) == 0 || w.err != nil {
		return
	}
	// The time goes first, so a reader who sees a line finds its time.
	if w.times != nil && batch > 0 {
		w.stampTimes()
	}
	n, err := w.f.Write(w.out)
	if err != nil {
		w.err = fmt.Errorf("write log: %w", err)
		if n > 0 {
			_ = w.f.Truncate(w.bytes) // best effort: keep the file to whole lines
		}
		return
	}
	w.mu.Lock()
	w.bytes += int64(n)
	w.lines += batch
	lines := w.lines
	w.mu.Unlock()
	// Commands count once their lines are in the log: none from lines a
	// cut at max_log_size discarded.
	for _, c := range cmds {
		if c.line <= lines {
			w.onCmd(c.cmd, c.line)
		}
	}
	if w.idx != nil && len(idxOut) > 0 {
		// The index is a help, not the record: readers rebuild what is
		// missing, so a failed write here is not the run's failure.
		if _, err := w.idx.Write(idxOut); err != nil {
			w.idx = nil
		}
	}
}

// stampTimes records when the lines about to be written arrived: a record
// for the first of them, unless the millisecond is the last record's.
func (w *logWriter) stampTimes() {
	ms := w.now().UnixMilli()
	if ms == w.lastMs {
		return
	}
	var rec [TimesRecordSize]byte
	binary.LittleEndian.PutUint64(rec[:8], uint64(w.lines+1))
	binary.LittleEndian.PutUint64(rec[8:], uint64(ms))
	if _, err := w.times.Write(rec[:]); err != nil {
		w.times = nil // like the index, a help: the log goes on without it
	}
	w.lastMs = ms
}

// Err returns the first write error.
func (w *logWriter) Err() error { return w.err }

// Counts returns the bytes and lines written so far.
func (w *logWriter) Counts() (bytes, lines int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes, w.lines
}

// cutOut keeps the whole lines of out that fit under the limit and ends the
// log with CutMarker.
func (w *logWriter) cutOut() {
	room := int(w.limit - w.bytes)
	keep := 0
	kept := int64(0)
	for keep < len(w.out) {
		i := bytes.IndexByte(w.out[keep:], '\n')
		if i < 0 || keep+i+1 > room {
			break
		}
		keep += i + 1
		kept++
	}
	w.out = append(w.out[:keep], CutMarker+"\n"...)
	w.batch = kept + 1
	// Index entries past the cut point at lines that are gone.
	for len(w.idxOut) >= 8 && int64(binary.LittleEndian.Uint64(w.idxOut[len(w.idxOut)-8:])) >= w.bytes+int64(keep) {
		w.idxOut = w.idxOut[:len(w.idxOut)-8]
	}
	w.cut = true
	w.pending = nil
}

// Cut reports whether the log was cut at its size limit.
func (w *logWriter) Cut() bool { return w.cut }
