package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// fidelity is what the page shows of testdata/fidelity's recordings
// (record.sh: real tools through a 120x40 pseudo-terminal) against what a
// terminal shows of the same bytes: tmux, the reference, with its history.
// exact says the page must show the very same rows.
var fidelity = []struct {
	name  string
	exact bool
}{
	{"git-clone", true},
	{"curl", true},
	{"wget", true},
	{"gcc", true},
	{"dd", true},
	{"tqdm", true},
	{"rich-progress", true},
	{"rich-table", true},
	{"cargo", true},
	{"ls-color", true},
	{"rich-status", true},
	{"npm", true},
	{"apt", true}, // its progress bar, pinned below a scrolling region, is erased at the end
}

// terminalShows is the text tmux shows for the bytes in path, played to a
// 120x40 terminal: every row, history first, trailing blanks trimmed.
func terminalShows(t *testing.T, path string) []string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "tmux")
	tmux := func(ctx context.Context, args ...string) []byte {
		t.Helper()
		out, err := exec.CommandContext(ctx, "tmux", append([]string{"-S", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v: %s", args[0], err, out)
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer exec.Command("tmux", "-S", sock, "kill-server").Run() //nolint:errcheck // it may be gone
	tmux(ctx, "start-server", ";", "set-option", "-g", "history-limit", "100000", ";",
		"new-session", "-d", "-x", "120", "-y", "40",
		fmt.Sprintf("cat '%s'; tmux -S '%s' wait-for -S played; sleep 600", path, sock))
	tmux(ctx, "wait-for", "played")
	out := tmux(ctx, "capture-pane", "-p", "-J", "-S", "-", "-E", "-")
	return trimRows(strings.Split(string(out), "\n"))
}

func trimRows(rows []string) []string {
	for i := range rows {
		rows[i] = strings.TrimRight(rows[i], " ")
	}
	for len(rows) > 0 && rows[len(rows)-1] == "" {
		rows = rows[:len(rows)-1]
	}
	return rows
}

// common is how many rows a and b share in order (their longest common
// subsequence).
func common(a, b []string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			switch {
			case a[i] == b[j]:
				cur[j+1] = prev[j] + 1
			case cur[j] > prev[j+1]:
				cur[j+1] = cur[j]
			default:
				cur[j+1] = prev[j+1]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// TestBrowserFidelity replays each recording as a job's output in a
// terminal of the recording's size and compares the rows the run page's
// screen holds with tmux's. SHIPLOG_FIDELITY=FILE writes the table (the
// README has it).
func TestBrowserFidelity(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed (apt-get install tmux)")
	}
	dir, err := filepath.Abs("testdata/fidelity")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, fmt.Sprintf(`
jobs:
  replay:
    tty: {cols: 120, rows: 40}
    params: [{name: NAME, required: true, pattern: '[a-z-]+'}]
    run: cat "%s/$NAME.tty"
`, dir))
	ctx := browser(t)
	failOnScriptErrors(t, ctx)
	table := []string{
		"| recording | bytes | raw lines | terminal rows | page rows | rows the same |",
		"|---|---|---|---|---|---|",
	}
	for _, f := range fidelity {
		path := filepath.Join(dir, f.name+".tty")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		term := terminalShows(t, path)
		run := s.trigger("replay", map[string]string{"NAME": f.name})
		s.waitRun(run.ID, isFinished)
		var page []string
		must(t, ctx,
			chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.URL, run.ID)),
			until(`window.shiplogLog && shiplogLog.finished`),
			chromedp.Evaluate(`shiplogLog.screen.rows.filter(r => !r.k).map(r => ShiplogTerm.rowText(r))`, &page),
		)
		page = trimRows(page)
		same := common(term, page)
		table = append(table, fmt.Sprintf("| %s | %d | %d | %d | %d | %d |", f.name, len(raw), strings.Count(string(raw), "\n"), len(term), len(page), same))
		if os.Getenv("SHIPLOG_FIDELITY_DIFF") == f.name {
			t.Logf("terminal:\n%s\npage:\n%s", strings.Join(term, "\n"), strings.Join(page, "\n"))
		}
		if f.exact && (same != len(term) || len(page) != len(term)) {
			for i := range max(len(term), len(page)) {
				var a, b string
				if i < len(term) {
					a = term[i]
				}
				if i < len(page) {
					b = page[i]
				}
				if a != b {
					t.Errorf("%s: row %d: terminal %q, page %q", f.name, i+1, a, b)
					break
				}
			}
		}
	}
	t.Log("\n" + strings.Join(table, "\n"))
	if out := os.Getenv("SHIPLOG_FIDELITY"); out != "" {
		if err := os.WriteFile(out, []byte(strings.Join(table, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
