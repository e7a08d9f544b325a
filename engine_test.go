package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/jobs"
)

// Every run's log reaches the engine, each byte once; logs written before
// the engine was there (an upgrade from a version without it) are sent at
// the next start.
func TestRunLogsReachTheEngine(t *testing.T) {
	data := t.TempDir()
	before := strings.Repeat("a line from before the engine\n", 1000)
	if err := os.MkdirAll(filepath.Join(data, "logs"), 0o750); err != nil {
		t.Fatal(err)
	}
	// A run as a shiplog from before the engine recorded it: in its
	// database alone.
	old, err := jobs.OpenStore(t.Context(), filepath.Join(data, "shiplog.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	run := &jobs.Run{Job: "mixed", Params: map[string]string{}, State: jobs.Queued, QueuedAt: time.Now().Truncate(time.Millisecond)}
	if err := old.Insert(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	finished := run.QueuedAt.Add(time.Second)
	run.State, run.StartedAt, run.FinishedAt, run.LogBytes, run.LogLines = jobs.Succeeded, &run.QueuedAt, &finished, int64(len(before)), 1000
	if err := old.Update(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	old.Close()
	if err := os.WriteFile(filepath.Join(data, "logs", fmt.Sprintf("%d.log", run.ID)), []byte(before), 0o640); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, `
jobs:
  mixed:
    run: |
      head -c 700000 /dev/zero | tr '\0' x; echo
      seq 1 20000
      printf 'no newline at the end'
`, func(c *Config) { c.DataDir = data })
	triggered := s.trigger("mixed", nil)
	final := s.waitRun(triggered.ID, isFinished)
	want := int64(len(before)) + final.Log.Bytes
	s.waitMetric(fmt.Sprintf("shiplog_log_shipped_bytes_total %d", want))
	s.waitMetric("shiplog_log_shipments 0")
}
