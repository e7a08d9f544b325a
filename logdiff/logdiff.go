// Package logdiff compares two runs' logs as a person would: what changed
// this time, ignoring what always changes (times, durations, ids, colours),
// in hunks of changed lines with a little context.
package logdiff

import (
	"regexp"
	"strings"
)

var (
	escapes = regexp.MustCompile(`\x1b\[[0-9;:?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[_P^X][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>78]`)
	uuids   = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	stamps  = regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b`)
	durs    = regexp.MustCompile(`\b(?:\d+h)?(?:\d+m)?\d+(?:\.\d+)?(?:ns|µs|us|ms|s)\b|\b\d+(?:\.\d+)?\s?(?:sec|secs|seconds|min|mins|minutes)\b`)
	hexes   = regexp.MustCompile(`\b[0-9a-fA-F]{7,}\b`)
)

// Normalize is line as the comparison sees it: without terminal escapes,
// with times, durations, UUIDs and hex ids (7 or more hex digits, both
// letters and digits) replaced by placeholders, and trailing blanks gone.
func Normalize(line string) string {
	if strings.IndexByte(line, 0x1b) >= 0 {
		line = escapes.ReplaceAllString(line, "")
	}
	if i := strings.LastIndexByte(line, '\r'); i >= 0 && i < len(line)-1 {
		line = line[i+1:] // what a terminal shows of a \r redraw
	}
	line = uuids.ReplaceAllString(line, "<id>")
	line = stamps.ReplaceAllString(line, "<time>")
	line = durs.ReplaceAllString(line, "<duration>")
	line = hexes.ReplaceAllStringFunc(line, func(h string) string {
		if strings.ContainsAny(h, "0123456789") && strings.ContainsAny(h, "abcdefABCDEF") {
			return "<id>"
		}
		return h
	})
	return strings.TrimRight(line, " \t\r")
}

// Op is one line of a diff: Kind ' ' (the same in both), '-' (only in the
// old log) or '+' (only in the new); A and B are its 1-based line numbers
// in each log (0 where it is not in that one).
type Op struct {
	Kind byte
	A, B int
}

// Diff compares a and b (already normalized) line by line, in at most
// maxEdits insertions and deletions (Myers' algorithm). ok is false when
// they differ by more: the ops then cover only the lines before the first
// difference.
func Diff(a, b []string, maxEdits int) (ops []Op, ok bool) {
	// The same start and end need no search.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	for i := range pre {
		ops = append(ops, Op{' ', i + 1, i + 1})
	}
	mid, ok := myers(a[pre:len(a)-suf], b[pre:len(b)-suf], maxEdits)
	if !ok {
		return ops, false
	}
	for _, op := range mid {
		if op.A > 0 {
			op.A += pre
		}
		if op.B > 0 {
			op.B += pre
		}
		ops = append(ops, op)
	}
	for i := range suf {
		ops = append(ops, Op{' ', len(a) - suf + i + 1, len(b) - suf + i + 1})
	}
	return ops, true
}

// myers is the shortest edit script from a to b, if it has at most max
// edits. Its memory is about max² / 2 int32s.
func myers(a, b []string, max int) ([]Op, bool) {
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return nil, true
	}
	off := max + 1
	v := make([]int32, 2*max+3)
	var trace [][]int32
	for d := 0; d <= max; d++ {
		snap := make([]int32, 2*d+3)
		copy(snap, v[off-d-1:off+d+2])
		trace = append(trace, snap)
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = int(v[off+k+1])
			} else {
				x = int(v[off+k-1]) + 1
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
			}
			v[off+k] = int32(x)
			if x >= n && y >= m {
				return backtrack(trace, n, m, d), true
			}
		}
	}
	return nil, false
}

// backtrack reads the edit script off the saved rows of V.
func backtrack(trace [][]int32, n, m, d int) []Op {
	var rev []Op
	x, y := n, m
	for ; d >= 0; d-- {
		row := trace[d] // V before step d, indexed k + d + 1
		at := func(k int) int { return int(row[k+d+1]) }
		k := x - y
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := 0
		if d > 0 {
			px = at(pk)
		}
		py := px - pk
		for x > px && y > py {
			rev = append(rev, Op{' ', x, y})
			x--
			y--
		}
		if d > 0 {
			if x == px {
				rev = append(rev, Op{'+', 0, y})
			} else {
				rev = append(rev, Op{'-', x, 0})
			}
		}
		x, y = px, py
	}
	ops := make([]Op, len(rev))
	for i, op := range rev {
		ops[len(rev)-1-i] = op
	}
	return ops
}

// Hunk is a run of changes with context lines around them.
type Hunk struct{ Ops []Op }

// Hunks groups ops into hunks, with context unchanged lines around each
// change; changes closer than twice that share a hunk.
func Hunks(ops []Op, context int) []Hunk {
	var out []Hunk
	for i := 0; i < len(ops); {
		if ops[i].Kind == ' ' {
			i++
			continue
		}
		start := max(0, i-context)
		end := i
		for end < len(ops) {
			if ops[end].Kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].Kind == ' ' {
				run++
			}
			if run-end > 2*context || run == len(ops) {
				end = min(end+context, len(ops))
				break
			}
			end = run
		}
		out = append(out, Hunk{Ops: ops[start:end]})
		i = end
	}
	return out
}

// Plain is line without terminal escapes, as a diff shows it.
func Plain(line string) string {
	if strings.IndexByte(line, 0x1b) < 0 {
		return line
	}
	return escapes.ReplaceAllString(line, "")
}
