package streams

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseQueryRefusesWhatCannotBeBounded(t *testing.T) {
	tests := []struct {
		name, q string
		want    string // in the error; "" for accepted
	}{
		{"plain", "error", ""},
		{"regexp", "re:warn(ing)?|error", ""},
		{"nested repetition", "re:(?:(?:.?){100}){10}Q", "too complex"},
		{"invalid UTF-8", "\xc3", "UTF-8"},
		{"invalid UTF-8 in a regexp", "re:\xc3", "UTF-8"},
		{"bad regexp", "re:(", "invalid regular expression"},
		{"empty", "", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, fold := range []bool{false, true} {
				_, err := ParseQuery(tt.q, fold)
				if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
					t.Errorf("fold=%v: %v, want %q", fold, err, tt.want)
				}
			}
		})
	}
}

// A regular expression may take milliseconds a line, so a search looks at
// its context every line: it stops at once when its client leaves.
func TestRegexpSearchStopsAtTheNextLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte(strings.Repeat(strings.Repeat("a", 1000)+"\n", 10000)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	q := Query{regex: true, match: func([]byte) bool {
		if calls++; calls == 5 {
			cancel() // the client leaves while line 5 is matched
		}
		return false
	}}
	_, _, err := Search(ctx, path, 10000*1001, q, 10, func(Match) error { return nil })
	if !errors.Is(err, context.Canceled) || calls != 5 {
		t.Errorf("search went on for %d lines after its client left (err %v)", calls-5, err)
	}
}

func TestRegexpSeesABoundedPrefixOfEachLine(t *testing.T) {
	q, err := ParseQuery("re:Q", false)
	if err != nil {
		t.Fatal(err)
	}
	if !q.match([]byte(strings.Repeat("a", MaxRegexpLine-1) + "Q")) {
		t.Error("a match inside the bound was missed")
	}
	if q.match([]byte(strings.Repeat("a", MaxRegexpLine) + "Q")) {
		t.Error("a regexp read past the bound")
	}
}
