package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A burst of unfinished lines reaches a follower paced, ending with the
// latest; a follower that starts while one shows is given it; an empty
// line clears it, and then nobody answers for the run.
func TestPartialLinesArePacedAndTheCurrentOneIsAnswered(t *testing.T) {
	e := startEngine(t, Config{Dir: t.TempDir()})
	p, err := e.Partials()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	type told struct {
		at   int64
		text string
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan told, 1000)
	sub, err := e.nc.Subscribe(partialSubject(7), func(m *nats.Msg) {
		at, _ := strconv.ParseInt(m.Header.Get(offsetHeader), 10, 64)
		got <- told{at, string(m.Data)}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= 100; i++ {
		p.Tell(7, 42, []byte(fmt.Sprintf("%d%%", i)))
	}
	var (
		seen  []told
		times []time.Time
	)
	for len(seen) == 0 || seen[len(seen)-1].text != "100%" {
		select {
		case m := <-got:
			seen, times = append(seen, m), append(times, time.Now())
		case <-ctx.Done():
			t.Fatalf("the latest line never came: %v", seen)
		}
	}
	if len(seen) != 2 || seen[0] != (told{42, "0%"}) {
		t.Fatalf("a burst of 101 went out as %v, want the first and the latest", seen)
	}
	if gap := times[1].Sub(times[0]); gap < partialEvery*9/10 {
		t.Fatalf("the latest came %v after the first, within one interval (%v)", gap, partialEvery)
	}

	// A follower that starts now is told the line shown.
	late := make(chan told, 10)
	stop2, err := e.FollowPartials(ctx, 7, func(at int64, text []byte) { late <- told{at, string(text)} })
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	select {
	case m := <-late:
		if m != (told{42, "100%"}) {
			t.Fatalf("a late follower was told %v", m)
		}
	case <-ctx.Done():
		t.Fatal("a late follower was not told the line shown")
	}
	// Long lines are sent from their last redraw.
	p.Tell(7, 42, []byte(strings.Repeat("x", 70<<10)+"\rshort"))
	for m := range got {
		if m.text == "\rshort" {
			break
		}
		if len(m.text) > 64<<10 {
			t.Fatalf("sent %d bytes", len(m.text))
		}
	}
	// Whole now: cleared, and forgotten.
	p.Tell(7, 50, nil)
	for m := range got {
		if m.text == "" {
			if m.at != 50 {
				t.Fatalf("cleared at %d", m.at)
			}
			break
		}
	}
	p.mu.Lock()
	n := len(p.runs)
	p.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d runs kept after their lines were whole", n)
	}
}
