package views

import (
	"fmt"
	"regexp"
	"strings"
)

var escapeRE = regexp.MustCompile(`\x1b\[[0-9;:?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>78]`)

// hiddenRE matches characters that change how text reads without showing
// themselves: bidi overrides and isolates, zero-width ones (not joiners,
// which emoji and scripts need). The page script shows them the same way.
var hiddenRE = regexp.MustCompile("[\u061C\u200B\u200E\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]")

// PlainLine renders a log line as plain text: escape sequences removed,
// hidden characters shown by their code ("U+202E"), and a line with
// carriage returns showing what a terminal would.
func PlainLine(s string) string {
	s = escapeRE.ReplaceAllString(s, "")
	s = hiddenRE.ReplaceAllStringFunc(s, func(c string) string { return fmt.Sprintf("<U+%04X>", []rune(c)[0]) })
	if !strings.Contains(s, "\r") {
		return s
	}
	s = strings.TrimRight(s, "\r")
	cur := ""
	for _, part := range strings.Split(s, "\r") {
		if len(part) >= len(cur) {
			cur = part
		} else {
			cur = part + cur[len(part):]
		}
	}
	return cur
}
