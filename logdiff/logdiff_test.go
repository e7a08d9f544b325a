package logdiff

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"\x1b[1;32mok\x1b[0m done", "ok done"},
		{"2026-12-07T16:10:03.123Z starting", "<time> starting"},
		{"[16:10:03] step 1", "[<time>] step 1"},
		{"built in 1.5s, tests 230ms, total 2m3s", "built in <duration>, tests <duration>, total <duration>"},
		{"took 12 seconds", "took <duration>"},
		{"commit 3f9a2b7c1d deployed", "commit <id> deployed"},
		{"request 123e4567-e89b-12d3-a456-426614174000 ok", "request <id> ok"},
		{"count 1234567 and deadbeefcafe", "count 1234567 and deadbeefcafe"}, // digits only, letters only: kept
		{"progress 10%\rprogress 100%", "progress 100%"},
		{"trailing   ", "trailing"},
	} {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// lcs is the length of the longest common subsequence, by the textbook
// table: the second implementation Diff is checked against.
func lcs(a, b []string) int {
	t := make([][]int, len(a)+1)
	for i := range t {
		t[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	return t[0][0]
}

// Diff's ops rebuild both logs, in order, with as few edits as any diff
// can have (n + m - 2·LCS), on random logs over a small alphabet.
func TestDiffIsMinimalAndRebuildsBoth(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gen := func() []string {
		out := make([]string, rng.IntN(40))
		for i := range out {
			out[i] = string(rune('a' + rng.IntN(4)))
		}
		return out
	}
	for range 500 {
		a, b := gen(), gen()
		ops, ok := Diff(a, b, 100)
		if !ok {
			t.Fatalf("%v vs %v: gave up", a, b)
		}
		var ra, rb []string
		edits := 0
		for _, op := range ops {
			switch op.Kind {
			case ' ':
				if a[op.A-1] != b[op.B-1] {
					t.Fatalf("%v vs %v: %+v pairs different lines", a, b, op)
				}
				ra, rb = append(ra, a[op.A-1]), append(rb, b[op.B-1])
			case '-':
				ra = append(ra, a[op.A-1])
				edits++
			case '+':
				rb = append(rb, b[op.B-1])
				edits++
			}
		}
		if strings.Join(ra, "") != strings.Join(a, "") || strings.Join(rb, "") != strings.Join(b, "") {
			t.Fatalf("%v vs %v: ops rebuild %v and %v", a, b, ra, rb)
		}
		if want := len(a) + len(b) - 2*lcs(a, b); edits != want {
			t.Fatalf("%v vs %v: %d edits, want %d", a, b, edits, want)
		}
	}
}

func TestDiffGivesUpPastItsBound(t *testing.T) {
	a := strings.Split("same x1 x2 x3 x4 x5", " ")
	b := strings.Split("same y1 y2 y3 y4 y5", " ")
	ops, ok := Diff(a, b, 4)
	if ok || len(ops) != 1 || ops[0] != (Op{' ', 1, 1}) {
		t.Fatalf("got %v %v, want the common start and no", ops, ok)
	}
}

func TestHunks(t *testing.T) {
	a := strings.Split("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", " ")
	b := append([]string(nil), a...)
	b[2] = "three"
	b[17] = "eighteen"
	ops, _ := Diff(a, b, 10)
	hs := Hunks(ops, 2)
	if len(hs) != 2 {
		t.Fatalf("%d hunks, want 2: %v", len(hs), hs)
	}
	if first := hs[0].Ops[0]; first.A != 1 || len(hs[0].Ops) != 6 {
		t.Errorf("first hunk %v", hs[0].Ops)
	}
}
