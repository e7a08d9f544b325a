package streams

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// Match is one line of a log that matched a search.
type Match struct {
	Line   int64  `json:"line"`
	Offset int64  `json:"offset"`
	Text   string `json:"text"` // the line, cut at maxMatchText bytes
}

const maxMatchText = 1024

// Query is what to look for: plain text, or a regular expression.
type Query struct {
	match func(line []byte) bool
	regex bool
}

// Bounds on a regular expression's cost. Go's regexp runs in time linear in
// the text, but the factor is the compiled program's size: a nested
// repetition like (?:(?:.?){100}){10} is thousands of steps per byte. The
// program is capped, and a regular expression sees only the first
// MaxRegexpLine bytes of each line, so one line costs at most tens of
// milliseconds and a search notices promptly that its client left.
const (
	MaxRegexpProgram = 500
	MaxRegexpLine    = 32 << 10
)

// ParseQuery reads "text" or "re:expression"; ignoreCase applies to both.
func ParseQuery(q string, ignoreCase bool) (Query, error) {
	if q == "" {
		return Query{}, errors.New("empty query")
	}
	if !utf8.ValidString(q) {
		return Query{}, errors.New("the query is not valid UTF-8")
	}
	if expr, ok := strings.CutPrefix(q, "re:"); ok {
		if ignoreCase {
			expr = "(?i)" + expr
		}
		parsed, err := syntax.Parse(expr, syntax.Perl)
		if err != nil {
			return Query{}, fmt.Errorf("invalid regular expression: %w", err)
		}
		prog, err := syntax.Compile(parsed.Simplify())
		if err != nil {
			return Query{}, fmt.Errorf("invalid regular expression: %w", err)
		}
		if len(prog.Inst) > MaxRegexpProgram {
			return Query{}, fmt.Errorf("regular expression too complex (%d steps, at most %d): use fewer or smaller repetitions", len(prog.Inst), MaxRegexpProgram)
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return Query{}, fmt.Errorf("invalid regular expression: %w", err)
		}
		return Query{regex: true, match: func(l []byte) bool { return re.Match(l[:min(len(l), MaxRegexpLine)]) }}, nil
	}
	if ignoreCase {
		if isASCII(q) {
			lower := []byte(strings.ToLower(q))
			return Query{match: func(l []byte) bool { return containsFoldASCII(l, lower) }}, nil
		}
		re := regexp.MustCompile("(?i)" + regexp.QuoteMeta(q))
		return Query{match: re.Match}, nil
	}
	needle := []byte(q)
	return Query{match: func(l []byte) bool { return bytes.Contains(l, needle) }}, nil
}

// Search reads the log's whole lines up to end, one at a time, and emits
// each matching line until limit matches. It holds no more than one line in
// memory. It returns how many matched and whether it stopped at the limit.
func Search(ctx context.Context, path string, end int64, q Query, limit int, emit func(Match) error) (int, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, err
	}
	defer f.Close()
	r := getReader(io.NewSectionReader(f, 0, end))
	defer putReader(r)
	var (
		pos, line int64
		checked   int64 // pos when ctx was last looked at
		n         int
		long      []byte // a line longer than the reader's buffer
	)
	for {
		chunk, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		if len(chunk) == 0 && len(long) == 0 {
			return n, false, nil
		}
		full := chunk
		if long != nil {
			long = append(long, chunk...)
			full, long = long, nil
		}
		line++
		start := pos
		pos += int64(len(full))
		text := full[:len(full)-min(1, len(full))]
		if q.match(text) {
			n++
			if err := emit(Match{Line: line, Offset: start, Text: string(text[:min(len(text), maxMatchText)])}); err != nil {
				return n, false, err
			}
			if n >= limit {
				return n, true, nil
			}
		}
		// A regular expression may cost milliseconds a line: look at the
		// context every line. Plain text every 4096 lines or 1 MiB.
		if q.regex || line%4096 == 0 || pos-checked >= 1<<20 {
			checked = pos
			if ctx.Err() != nil {
				return n, false, ctx.Err()
			}
		}
		if err != nil {
			return n, false, nil
		}
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// containsFoldASCII reports whether s holds q (lower case ASCII) in any
// case, without copying s: it jumps between occurrences of q's first byte.
func containsFoldASCII(s, q []byte) bool {
	if len(q) == 0 {
		return true
	}
	lo, up := q[0], q[0]
	if 'a' <= lo && lo <= 'z' {
		up = lo - 'a' + 'A'
	}
	for i := 0; i+len(q) <= len(s); {
		rest := s[i : len(s)-len(q)+1]
		j := bytes.IndexByte(rest, lo)
		if up != lo {
			if k := bytes.IndexByte(rest, up); k >= 0 && (j < 0 || k < j) {
				j = k
			}
		}
		if j < 0 {
			return false
		}
		i += j
		if equalFoldASCII(s[i:i+len(q)], q) {
			return true
		}
		i++
	}
	return false
}

func equalFoldASCII(s, lower []byte) bool {
	for i, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
