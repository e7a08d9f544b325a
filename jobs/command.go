package jobs

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Command is a workflow command a run printed, in the GitHub Actions form
// "::name key=value,...::value".
type Command struct {
	Name  string // group, endgroup, progress, add-mask, notice, warning, error
	Props map[string]string
	Value string
}

var commandNames = map[string]bool{
	"group": true, "endgroup": true, "progress": true, "add-mask": true,
	"notice": true, "warning": true, "error": true, "debug": true,
	"stop-commands": true,
}

// hashCommands are the commands also read in the older "##[name]value"
// form, which GitHub still reads (no properties).
var hashCommands = map[string]bool{
	"group": true, "endgroup": true, "notice": true, "warning": true, "error": true, "debug": true,
}

// ParseCommand recognises a workflow command in one log line (without its
// newline): "::name key=value,...::value", or "##[name]value". It returns
// false for ordinary output. The value is unescaped as GitHub's toolkit
// escapes it (%25, %0D, %0A), properties also for %3A and %2C.
func ParseCommand(line []byte) (Command, bool) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if bytes.HasPrefix(line, []byte("##[")) {
		end := bytes.IndexByte(line, ']')
		if end < 0 || !hashCommands[string(line[3:end])] {
			return Command{}, false
		}
		return Command{Name: string(line[3:end]), Value: unescapeData(string(line[end+1:]))}, true
	}
	if !bytes.HasPrefix(line, []byte("::")) {
		return Command{}, false
	}
	rest := string(line[2:])
	end := strings.Index(rest, "::")
	if end < 0 {
		return Command{}, false
	}
	head, value := rest[:end], rest[end+2:]
	name, props, _ := strings.Cut(head, " ")
	if !commandNames[name] {
		return Command{}, false
	}
	cmd := Command{Name: name, Value: unescapeData(value)}
	if props = strings.TrimSpace(props); props != "" {
		cmd.Props = map[string]string{}
		for _, kv := range strings.Split(props, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			cmd.Props[strings.TrimSpace(k)] = unescapeProp(strings.TrimSpace(v))
		}
	}
	return cmd, true
}

var (
	dataUnescaper = strings.NewReplacer("%25", "%", "%0D", "\r", "%0A", "\n")
	propUnescaper = strings.NewReplacer("%25", "%", "%0D", "\r", "%0A", "\n", "%3A", ":", "%2C", ",")
)

// unescapeData undoes the %-escaping GitHub's toolkit applies to a
// command's value.
func unescapeData(s string) string { return dataUnescaper.Replace(s) }

// unescapeProp undoes the %-escaping GitHub's toolkit applies to properties.
func unescapeProp(s string) string { return propUnescaper.Replace(s) }

// ParseProgress reads "40 Migrating database" as 40% and its message.
func ParseProgress(v string) (Progress, bool) {
	v = strings.TrimSpace(v)
	num, msg, _ := strings.Cut(v, " ")
	num = strings.TrimSuffix(num, "%")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f != f { // NaN
		return Progress{}, false
	}
	pct := int(f)
	pct = max(0, min(100, pct))
	return Progress{Percent: pct, Message: strings.TrimSpace(msg)}, true
}

// onCommand applies a workflow command to the run's record.
func (r *Runner) onCommand(t *task, c Command, line int64) {
	r.mu.Lock()
	switch c.Name {
	case "progress":
		p, ok := ParseProgress(c.Value)
		if !ok {
			r.mu.Unlock()
			return
		}
		p.Message = clip(p.Message, maxNoteBytes)
		t.run.Progress = &p
	case "notice", "warning", "error":
		if len(t.run.Annotations) >= maxAnnotations {
			r.mu.Unlock()
			return
		}
		t.run.Annotations = append(t.run.Annotations, annotation(c, line))
	case "group":
		if len(t.run.Groups) >= maxGroups {
			t.groupsSkipped++ // its endgroup must not close another
			r.mu.Unlock()
			return
		}
		depth := 0
		for _, g := range t.run.Groups {
			if g.EndLine == 0 {
				depth++
			}
		}
		t.run.Groups = append(t.run.Groups, Group{Title: clip(c.Value, maxTitleBytes), Line: line, Depth: depth, Start: recordTime()})
	case "endgroup":
		if t.groupsSkipped > 0 {
			t.groupsSkipped--
			r.mu.Unlock()
			return
		}
		closed := false
		for i := len(t.run.Groups) - 1; i >= 0 && !closed; i-- {
			if g := &t.run.Groups[i]; g.EndLine == 0 {
				now := recordTime()
				g.EndLine, g.End, closed = line, &now, true
			}
		}
		if !closed {
			r.mu.Unlock()
			return // no group open
		}
	default:
		r.mu.Unlock()
		return
	}
	r.notify(t)
	// Progress is live in memory at once; the store (and so the other
	// replicas) gets it at most once a second, and for certain at the end.
	snap := r.persistSoon(t)
	r.mu.Unlock()
	if snap != nil {
		r.persist(t, snap)
	}
}

// annotation makes an annotation of a notice, warning or error printed on
// log line line, with the place in the source it names, if any.
func annotation(c Command, line int64) Annotation {
	num := func(key string) int {
		n, err := strconv.Atoi(c.Props[key])
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	return Annotation{
		Level: c.Name, Message: clip(c.Value, maxNoteBytes), Title: clip(c.Props["title"], maxTitleBytes), Line: line,
		File: clip(c.Props["file"], maxTitleBytes), StartLine: num("line"), EndLine: num("endLine"),
		StartColumn: num("col"), EndColumn: num("endColumn"),
	}
}

// maxAnnotations bounds what one run can store; a job that prints an error
// per line should not bloat the database. maxNoteBytes and maxTitleBytes
// bound each (a line can be 4 MiB), so a run's record stays well under
// the engine's message size: the whole line is in the log.
const (
	maxAnnotations = 200
	maxGroups      = 200
	maxNoteBytes   = 2 << 10
	maxTitleBytes  = 200
)

// clip cuts s to at most n bytes on a character boundary, marking the cut
// with an ellipsis (within n).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const more = "…"
	i := n - len(more)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + more
}
