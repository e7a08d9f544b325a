package views

import (
	"regexp"
	"strings"
)

var escapeRE = regexp.MustCompile(`\x1b\[[0-9;:?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>78]`)

// PlainLine renders a log line as plain text: escape sequences removed, and
// a line with carriage returns showing what a terminal would.
func PlainLine(s string) string {
	s = escapeRE.ReplaceAllString(s, "")
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
