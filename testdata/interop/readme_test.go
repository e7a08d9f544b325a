package interop

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's client snippets are the code this suite runs: each region
// between "snippet: NAME" and "end snippet" in interop_test.go and
// node/follow.mjs must appear in the README as it is, minus its
// indentation.
func TestReadmeSnippets(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?s)// snippet: ([^\n]+)\n(.*?)\n\s*// end snippet`)
	found := 0
	for _, file := range []string{"interop_test.go", "node/follow.mjs"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			found++
			if snippet := dedent(m[2]); !strings.Contains(string(readme), snippet) {
				t.Errorf("the README does not show the %s snippet of %s as it runs:\n%s", m[1], file, snippet)
			}
		}
	}
	if found < 5 {
		t.Fatalf("%d snippets found", found)
	}
}

// dedent removes the indentation all of s's lines share.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " \t"))
		if indent < 0 || n < indent {
			indent = n
		}
	}
	for i, l := range lines {
		if len(l) >= indent {
			lines[i] = l[indent:]
		}
	}
	return strings.Join(lines, "\n")
}
