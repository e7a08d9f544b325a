package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	if err := os.WriteFile(filepath.Join(data, "logs", "900.log"), []byte(before), 0o640); err != nil {
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
	run := s.trigger("mixed", nil)
	final := s.waitRun(run.ID, isFinished)
	want := int64(len(before)) + final.Log.Bytes
	s.waitMetric(fmt.Sprintf("shiplog_log_shipped_bytes_total %d", want))
	s.waitMetric("shiplog_log_shipments 0")
}
