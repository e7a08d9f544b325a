package static

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"testing"
)

// step is one input to the screen: a raw line, a block row (a workflow
// command), an unfinished line, or a drop of the first rows.
type step struct {
	Line    *string `json:"line,omitempty"`
	Block   *string `json:"block,omitempty"`
	Partial *string `json:"partial,omitempty"`
	Drop    *int    `json:"drop,omitempty"`
}

func lines(ls ...string) []step {
	out := make([]step, len(ls))
	for i := range ls {
		out[i] = step{Line: &ls[i]}
	}
	return out
}

func partial(s string) step { return step{Partial: &s} }
func block(s string) step   { return step{Block: &s} }
func drop(n int) step       { return step{Drop: &n} }

type screenCase struct {
	Name   string `json:"name"`
	Height int    `json:"height,omitempty"`
	Steps  []step `json:"steps"`
	RowOf  []int  `json:"rowOf,omitempty"`

	want       []string       // "N|text" per row
	wantStyles map[int]string // row index → its runs, where it matters
	wantRowOf  []int          // rowOfLine for RowOf
	wantFirst  int            // firstLine, where it matters
}

// TestScreen runs term.js, the page's terminal screen, under Node: what a
// terminal shows for each input, row by row, with the number of the raw
// line each row belongs to.
func TestScreen(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	seq := func(s ...step) []step { return s }
	cat := slices.Concat[[]step]
	cases := []screenCase{
		{Name: "plain lines", Steps: lines("one", "", "three"), want: []string{"1|one", "2|", "3|three"}},
		{Name: "backspace overwrites", Steps: lines("abc\b\bX"), want: []string{"1|aXc"}},
		{Name: "carriage return redraws", Steps: lines("bar 10%\rbar 55%\rbar 100%"), want: []string{"1|bar 100%"}},
		{Name: "shorter redraw keeps the rest", Steps: lines("downloading\rdone"), want: []string{"1|doneloading"}},
		{Name: "cursor up redraws three rows", Steps: lines(
			"a 0%", "b 0%", "c 0%",
			"\x1b[3A\r\x1b[2Ka 50%", "\x1b[2Kb 50%", "\x1b[2Kc 50%",
			"\x1b[3A\r\x1b[2Ka done", "\x1b[2Kb done", "\x1b[2Kc done",
			"all pulled"),
			want: []string{"1|a done", "2|b done", "3|c done", "10|all pulled"}},
		{Name: "cursor up then down lands on the row to come", Steps: lines("x", "y", "\x1b[2AX\x1b[5B\rz"), want: []string{"1|X", "2|y", "3|z"}},
		{Name: "colour carries across lines", Steps: lines("\x1b[31mred", "still red", "\x1b[0mplain"),
			want: []string{"1|red", "2|still red", "3|plain"}, wantStyles: map[int]string{0: `0:{"fg":1}`, 1: `0:{"fg":1}`, 2: ``}},
		{Name: "apc osc dcs never show", Steps: lines("\x1b_bk;t=1700000000000\x07hello", "\x1b]0;a title\x07x", "\x1bPq#0;2;0;0;0\x1b\\y", "\x1b]2;unterminated\x1b[1mbold"),
			want: []string{"1|hello", "2|x", "3|y", "4|bold"}},
		{Name: "osc 8 links http only", Steps: lines("\x1b]8;;https://example.com/a\x1b\\link\x1b]8;;\x1b\\ after", "\x1b]8;;javascript:alert(1)\x07no\x1b]8;;\x07"),
			want: []string{"1|link after", "2|no"}, wantStyles: map[int]string{0: `0:{"link":"https://example.com/a"} 4:{}`, 1: ``}},
		{Name: "tabs move to the next stop", Steps: lines("a\tb", "12345678\tc"), want: []string{"1|a       b", "2|12345678        c"}},
		{Name: "erase in line", Steps: lines("hello\x1b[3D\x1b[K", "hello\x1b[3D\x1b[1K", "hello\x1b[2K!"), want: []string{"1|he", "2|   lo", "3|     !"}},
		{Name: "save and restore", Steps: lines("ab\x1b7cd\x1b8X", "ab\x1b[scd\x1b[uY"), want: []string{"1|abXd", "2|abYd"}},
		{Name: "column and position", Steps: lines("abcdef\x1b[3GX", "one", "two\x1b[1;2HZ"), want: []string{"1|aZXdef", "2|one", "3|two"}},
		{Name: "erase display starts a new screen", Steps: lines("one", "two", "\x1b[H\x1b[2Jthree", "\x1b[2Afour"), want: []string{"1|one", "2|two", "3|foure"}},
		{Name: "cursor stays on the screen", Height: 3, Steps: lines("1", "2", "3", "4", "5", "\x1b[10A\rX"), want: []string{"1|1", "2|2", "3|3", "4|X", "5|5"}},
		{Name: "unfinished line shows and goes", Steps: cat(lines("a"), seq(partial("Password: "))), want: []string{"1|a", "2|Password: "}},
		{Name: "unfinished line replaced by the whole one", Steps: cat(lines("a"), seq(partial("Pass")), lines("Password: ok")), want: []string{"1|a", "2|Password: ok"}},
		{Name: "unfinished redraw taken back", Steps: cat(lines("a", "b"), seq(partial("\x1b[2A\rX"), partial("y"))), want: []string{"1|a", "2|b", "3|y"}},
		{Name: "unfinished progress", Steps: cat(lines("start"), seq(partial("10%\r55%"))), want: []string{"1|start", "2|55%"}},
		{Name: "extended colours", Steps: lines("\x1b[38:2::255:0:0mA\x1b[38;2;0;255;0mB\x1b[38;5;196mC\x1b[38:5:3mD\x1b[48;5;232mE\x1b[0m"),
			want: []string{"1|ABCDE"}, wantStyles: map[int]string{0: `0:{"fg":"rgb(255,0,0)"} 1:{"fg":"rgb(0,255,0)"} 2:{"fg":"rgb(255,0,0)"} 3:{"fg":3} 4:{"fg":3,"bg":"rgb(8,8,8)"}`}},
		{Name: "underline styles and attributes", Steps: lines("\x1b[4:3mc\x1b[4:0m\x1b[21md\x1b[24;2;7;9;53me\x1b[m"),
			want: []string{"1|cde"}, wantStyles: map[int]string{0: `0:{"u":3} 1:{"u":2} 2:{"d":1,"inv":1,"s":1,"o":1}`}},
		{Name: "concealed text is blank", Steps: lines("\x1b[8msecret\x1b[28m ok"), want: []string{"1|       ok"}},
		{Name: "line drawing set", Steps: lines("\x1b(0lqk\x1b(B x"), want: []string{"1|┌─┐ x"}},
		{Name: "delete and insert characters", Steps: lines("abcdef\x1b[3G\x1b[2P", "abc\x1b[2G\x1b[2@", "abc\x1b[2G\x1b[1X"), want: []string{"1|abef", "2|a  bc", "3|a c"}},
		{Name: "private modes and reports ignored", Steps: lines("\x1b[?25l\x1b[?1049hx\x1b[6n\x1b[>c\x1b[?25h"), want: []string{"1|x"}},
		{Name: "block rows sit at the bottom", Steps: cat(lines("a", "b"), seq(block("::group::g")), lines("c")), want: []string{"1|a", "2|b", "3|::group::g", "4|c"}},
		{Name: "rows of raw lines", Steps: lines("a", "b", "\x1b[2A\rA", "B", "c"), RowOf: []int{1, 2, 3, 4, 5}, want: []string{"1|A", "2|B", "5|c"}, wantRowOf: []int{0, 1, 0, 1, 2}},
		{Name: "drop keeps the rest", Steps: cat(lines("a", "b", "c"), seq(drop(2)), lines("\x1b[5A\rX")), want: []string{"3|X"}, wantFirst: 3},
		{Name: "status line below a scrolling region is not kept", Height: 40, Steps: lines("one", "",
			"\x1b7\x1b[0;39r\x1b8\x1b[1Atwo", "\x1b7\x1b[40;0f\x1b[42mProgress: [ 40%]\x1b[49m\x1b8three", "\x1b7\x1b[0;40r\x1b8\x1b[1A\x1b[Jfour"),
			want: []string{"1|one", "2|two", "4|four"}},
		{Name: "a region reaching the last row keeps everything", Height: 40, Steps: lines("\x1b[1;40ra", "\x1b[40;1Hb"), want: []string{"1|a", "2|b"}},
		{Name: "a lone escape is dropped", Steps: lines("a\x1b", "\x1b[", "b\x07\x00c"), want: []string{"1|a", "2|", "3|bc"}},
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "testdata/screen.js")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var got []struct {
		Rows   []string `json:"rows"`
		Styles []string `json:"styles"`
		First  int      `json:"first"`
		RowOf  []int    `json:"rowOf"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for i, c := range cases {
		g := got[i]
		t.Run(c.Name, func(t *testing.T) {
			if !slices.Equal(g.Rows, c.want) {
				t.Errorf("rows\n got %q\nwant %q", g.Rows, c.want)
			}
			for r, want := range c.wantStyles {
				if r >= len(g.Styles) || g.Styles[r] != want {
					t.Errorf("row %d styles: got %v, want %q", r, g.Styles, want)
				}
			}
			if c.wantRowOf != nil && !slices.Equal(g.RowOf, c.wantRowOf) {
				t.Errorf("rows of lines %v: got %v, want %v", c.RowOf, g.RowOf, c.wantRowOf)
			}
			if c.wantFirst != 0 && g.First != c.wantFirst {
				t.Errorf("first line held: got %d, want %d", g.First, c.wantFirst)
			}
		})
	}
}
