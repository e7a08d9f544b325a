package jobs

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shiplog/shiplog/logfile"
)

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
	times   *logfile.TimesWriter
	partial *os.File // ID.log.partial: the unfinished last line, masked
	partLen int      // bytes of the unfinished line kept and told now
	// onPartial is told the unfinished last line, masked, after each write
	// that changes it: text follows the whole lines that end at offset at
	// (empty once the line is whole). text is valid during the call only.
	onPartial func(at int64, text []byte)
	now       func() time.Time
	onFlush   func()   // after each write to the log
	stopped   string   // the ::stop-commands:: token while commands are off
	notes     []string // lines of shiplog's own waiting for the job's line to end

	// wmu serialises writing: the job's output, and lines of shiplog's
	// own interjected from other goroutines (Interject).
	wmu sync.Mutex

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
	w := &logWriter{f: f, idx: idx, onCmd: onCmd, now: time.Now}
	for _, s := range secrets {
		w.addMask(s)
	}
	return w
}

// maskForms returns v and the forms a script might print it in by
// accident: base64 (standard and URL alphabets, at each of the three
// alignments it can have inside longer encoded text, as in an HTTP Basic
// header), URL escaping, hex in either case, JSON string escaping, and the
// quoting of set -x and printf %q. SECURITY.md lists them.
func maskForms(v string) []string {
	forms := []string{v,
		url.QueryEscape(v), url.PathEscape(v),
		hex.EncodeToString([]byte(v)), strings.ToUpper(hex.EncodeToString([]byte(v))),
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		forms = append(forms, enc.EncodeToString([]byte(v)), enc.WithPadding(base64.NoPadding).EncodeToString([]byte(v)))
		forms = append(forms, base64Inner(enc, v)...)
	}
	if j, err := json.Marshal(v); err == nil {
		forms = append(forms, string(j[1:len(j)-1]))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		j := bytes.TrimSpace(buf.Bytes())
		forms = append(forms, string(j[1:len(j)-1]))
	}
	if strings.Contains(v, "'") {
		forms = append(forms, strings.ReplaceAll(v, "'", `'\''`), strings.ReplaceAll(v, "'", `'"'"'`))
	}
	forms = append(forms, backslashQuoted(v), escapeProp.Replace(v))
	return forms
}

// escapeProp is the %-escaping of workflow command properties (the GitHub
// Actions toolkit's): a secret in an annotation title is printed so.
var escapeProp = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")

// base64Inner returns, for each alignment v can have inside a longer
// base64-encoded text, the characters that encode v's bytes alone.
func base64Inner(enc *base64.Encoding, v string) []string {
	var out []string
	for a := 1; a <= 2; a++ { // alignment 0 is the plain encoding
		full := enc.EncodeToString(append(make([]byte, a), v...))
		end := 4 * ((a + len(v)) / 3) // whole groups only: the last may mix in what follows
		if end-4 >= 6 {               // shorter would mask innocent base64 too
			out = append(out, full[4:end]) // the first group mixes in what came before
		}
	}
	// Alignment 0 followed by more text: the last partial group changes.
	if n := 4 * (len(v) / 3); n >= 8 {
		out = append(out, enc.EncodeToString([]byte(v))[:n])
	}
	return out
}

// backslashQuoted is v as bash's printf %q writes it: a backslash before
// each character that is not a letter, digit or one of ,._+:@%/-.
func backslashQuoted(v string) string {
	var b strings.Builder
	for _, r := range v {
		plain := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(",._+:@%/-", r)
		if !plain {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (w *logWriter) addMask(v string) {
	// A multi-line secret is masked line by line, as it appears in the log.
	for _, part := range strings.Split(v, "\n") {
		part = strings.TrimSuffix(part, "\r")
		// "::add-mask::value " masks the value, as the runner of GitHub
		// Actions does; the exact text too, should the spaces matter.
		if trimmed := strings.TrimSpace(part); trimmed != part && len(trimmed) >= minMaskLen {
			for _, f := range maskForms(trimmed) {
				if len(f) >= minMaskLen && !containsString(w.masks, f) {
					w.masks = append(w.masks, f)
				}
			}
		}
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
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.cut {
		return
	}
	w.out = w.out[:0]
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.pending = append(w.pending, p...)
			for len(w.pending) > logfile.MaxLineBytes {
				cut := w.splitAt(w.pending)
				w.line(w.pending[:cut], true)
				w.pending = append(w.pending[:0], w.pending[cut:]...)
			}
			break
		}
		if len(w.pending) > 0 {
			w.pending = append(w.pending, p[:i]...)
			for len(w.pending) > logfile.MaxLineBytes {
				cut := w.splitAt(w.pending)
				w.line(w.pending[:cut], true)
				w.pending = append(w.pending[:0], w.pending[cut:]...)
			}
			w.line(w.pending, false)
			w.pending = w.pending[:0]
			w.emitNotes()
		} else {
			l := p[:i]
			for len(l) > logfile.MaxLineBytes {
				cut := w.splitAt(l)
				w.line(l[:cut], true)
				l = l[cut:]
			}
			w.line(l, false)
		}
		p = p[i+1:]
	}
	w.flush()
	w.keepPartial()
}

// splitAt is where a line too long to keep whole is split: at logfile.MaxLineBytes,
// or earlier so that no masked value straddles the split (each piece is
// masked on its own).
func (w *logWriter) splitAt(l []byte) int {
	return logfile.MaxLineBytes - w.secretPrefixAtEnd(l[:logfile.MaxLineBytes])
}

// keepPartial writes the unfinished last line, masked, to the partial file,
// so a server killed before its newline arrives loses none of it (a restart
// appends it to the log). What could still become a secret, with the bytes
// yet to come, is held back.
func (w *logWriter) keepPartial() {
	if (w.partial == nil && w.onPartial == nil) || (len(w.pending) == 0 && w.partLen == 0) {
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
	if w.partial != nil {
		if _, err := w.partial.WriteAt(safe, 0); err != nil || w.partial.Truncate(int64(len(safe))) != nil {
			w.partial = nil // a help, like the index: the log goes on without it
		}
	}
	w.partLen = len(safe)
	if w.onPartial != nil {
		w.onPartial(w.bytes, safe)
	}
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

// Interject adds a line of shiplog's own (a gate asked or answered) to
// the log between the job's lines: now, or after the line the job is in
// the middle of, so that no line of the job's is split.
func (w *logWriter) Interject(line string) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.cut {
		return
	}
	if len(w.pending) > 0 {
		w.notes = append(w.notes, line)
		return
	}
	w.out = w.out[:0]
	w.line([]byte(line), false)
	w.flush()
}

// emitNotes adds the interjected lines that waited for the job's line.
func (w *logWriter) emitNotes() {
	for _, n := range w.notes {
		w.line([]byte(n), false)
	}
	w.notes = nil
}

// LinesNow is how many lines the log has once the write under way, if
// any, is done.
func (w *logWriter) LinesNow() int64 {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_, lines := w.Counts()
	return lines
}

// mask is s with the run's masks applied.
func (w *logWriter) mask(s string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.replacer == nil || len(w.masks) == 0 {
		return s
	}
	return w.replacer.Replace(s)
}

// Close writes a last line that had no newline.
func (w *logWriter) Close() {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.close()
}

func (w *logWriter) close() {
	w.out = w.out[:0]
	if len(w.pending) > 0 {
		w.line(w.pending, false)
		w.pending = nil
	}
	w.emitNotes()
	w.flush()
	if w.partial != nil {
		_ = w.partial.Truncate(0) // the log has it now
	}
	if w.partLen > 0 && w.onPartial != nil {
		w.onPartial(w.bytes, nil)
	}
	w.partLen = 0
}

// Note closes the output as Close does, then adds a line of shiplog's own
// (logfile.Note) after the job's last line; none after a cut log, which
// ends with its cut marker.
func (w *logWriter) Note(line string) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.close()
	if w.cut {
		return
	}
	w.out = w.out[:0]
	w.line([]byte(line), false)
	w.flush()
}

// line appends one processed line to the output buffer.
func (w *logWriter) line(l []byte, split bool) {
	cmd, isCmd := ParseCommand(l)
	switch {
	case w.stopped != "":
		// Commands are off (::stop-commands::TOKEN) until ::TOKEN::, so
		// a job can print untrusted text without it adding masks or
		// annotations.
		if string(bytes.TrimSuffix(l, []byte("\r"))) == "::"+w.stopped+"::" {
			w.stopped = ""
		}
		isCmd = false
	case isCmd && cmd.Name == "stop-commands" && cmd.Value != "":
		w.stopped = cmd.Value
	}
	if isCmd && cmd.Name == "add-mask" {
		w.mu.Lock()
		w.addMask(cmd.Value)
		w.mu.Unlock()
	}
	start := len(w.out)
	if n := w.lines + w.batch; n%logfile.IndexEvery == 0 {
		w.idxOut = logfile.AppendIndex(w.idxOut, w.bytes+int64(start))
	}
	if w.replacer != nil && len(w.masks) > 0 {
		w.out = append(w.out, w.replacer.Replace(string(l))...)
	} else {
		w.out = append(w.out, l...)
	}
	if split {
		w.out = append(w.out, logfile.SplitMarker...)
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
			w.cmds = append(w.cmds, lineCmd{w.maskCommand(cmd), n})
		}
	}
}

// maskCommand masks a command's values once more after decoding: a secret
// %-escaped in a property ("title=user%3Apa55") is whole only once decoded.
func (w *logWriter) maskCommand(c Command) Command {
	if w.replacer == nil || len(w.masks) == 0 {
		return c
	}
	c.Value = w.replacer.Replace(c.Value)
	for k, v := range c.Props {
		c.Props[k] = w.replacer.Replace(v)
	}
	return c
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
		w.times.Stamp(w.lines+1, w.now().UnixMilli())
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
	if w.onFlush != nil {
		w.onFlush()
	}
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

// Err returns the first write error.
func (w *logWriter) Err() error { return w.err }

// Counts returns the bytes and lines written so far.
func (w *logWriter) Counts() (bytes, lines int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes, w.lines
}

// cutOut keeps the whole lines of out that fit under the limit and ends the
// log with logfile.CutMarker.
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
	w.out = append(w.out[:keep], logfile.CutMarker+"\n"...)
	w.batch = kept + 1
	// Index entries past the cut point at lines that are gone.
	for len(w.idxOut) >= 8 && logfile.IndexEntry(w.idxOut[len(w.idxOut)-8:]) >= w.bytes+int64(keep) {
		w.idxOut = w.idxOut[:len(w.idxOut)-8]
	}
	w.cut = true
	w.pending = nil
}

// Cut reports whether the log was cut at its size limit.
func (w *logWriter) Cut() bool { return w.cut }
