package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/jobs"
)

// A job's group trends: top-level groups in order of first appearance, a
// bar per run oldest first, a gap where a run lacked the group or never
// ended it, coloured by how it went.
func TestGroupTrends(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	group := func(title string, depth int, secs float64, ended bool) jobs.Group {
		g := jobs.Group{Title: title, Line: 1, Depth: depth, Start: at}
		if ended {
			end := at.Add(time.Duration(secs * float64(time.Second)))
			g.End, g.EndLine = &end, 9
		}
		return g
	}
	// Newest first, as the store lists them.
	runs := []*jobs.Run{
		{ID: 3, State: jobs.Failed, Groups: []jobs.Group{group("Build", 0, 3, true), group("Test", 0, 0, false)}},
		{ID: 2, State: jobs.Succeeded, Groups: []jobs.Group{group("Build", 0, 2, true), group("inner", 1, 1, true), group("Deploy", 0, 5, true)}},
		{ID: 1, State: jobs.Succeeded, Groups: []jobs.Group{group("Build", 0, 1, true), group("Test", 0, 4, true)}},
	}
	got := groupTrends(runs)
	want := []string{"Build [1:succeeded:1 2:succeeded:2 3:succeeded:3]", "Test [1:succeeded:4 0::0 0::0]", "Deploy [0::0 2:succeeded:5 0::0]"}
	if len(got) != len(want) {
		t.Fatalf("%d trends, want %d: %+v", len(got), len(want), got)
	}
	for i, tr := range got {
		s := tr.Title + " ["
		for k, b := range tr.Bars {
			if k > 0 {
				s += " "
			}
			s += fmt.Sprintf("%d:%s:%g", b.ID, b.State, b.Seconds)
		}
		if s += "]"; s != want[i] {
			t.Errorf("trend %d: %s, want %s", i, s, want[i])
		}
	}
}
