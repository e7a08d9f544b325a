package main

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shiplog/shiplog/jobs"
)

// durationBuckets are the upper bounds, in seconds, of the run duration
// histogram.
var durationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600}

// durations is a Prometheus histogram of finished run durations.
type durations struct {
	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      uint64
}

func newDurations() *durations { return &durations{counts: make([]uint64, len(durationBuckets)+1)} }

func (d *durations) observe(v time.Duration) {
	s := v.Seconds()
	d.mu.Lock()
	defer d.mu.Unlock()
	i := 0
	for i < len(durationBuckets) && s > durationBuckets[i] {
		i++
	}
	d.counts[i]++
	d.sum += s
	d.n++
}

func (s *server) getMetrics(c echo.Context) error {
	counts, err := s.runner.CountByState(c.Request().Context())
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("# HELP shiplog_runs Runs in the history, by state.\n# TYPE shiplog_runs gauge\n")
	for _, st := range jobs.States {
		fmt.Fprintf(&b, "shiplog_runs{state=%q} %d\n", st, counts[st])
	}
	fmt.Fprintf(&b, "# HELP shiplog_queue_length Runs waiting to start.\n# TYPE shiplog_queue_length gauge\nshiplog_queue_length %d\n", s.runner.QueueLength(c.Request().Context()))
	fmt.Fprintf(&b, "# HELP shiplog_active_streams Open event streams.\n# TYPE shiplog_active_streams gauge\nshiplog_active_streams %d\n", s.activeStreams.Load())
	fmt.Fprintf(&b, "# HELP shiplog_active_searches Log searches running.\n# TYPE shiplog_active_searches gauge\nshiplog_active_searches %d\n", s.activeSearches.Load())
	if s.engine != nil {
		fmt.Fprintf(&b, "# HELP shiplog_engine_slow_consumers_total Times this process fell behind an engine subscription and messages were dropped.\n# TYPE shiplog_engine_slow_consumers_total counter\nshiplog_engine_slow_consumers_total %d\n", s.engine.SlowConsumers())
		fmt.Fprintf(&b, "# HELP shiplog_log_copies Logs of runs on other nodes that this one is copying from the engine: one engine subscription each.\n# TYPE shiplog_log_copies gauge\nshiplog_log_copies %d\n", s.copies.Active())
	}
	if s.shipper != nil {
		fmt.Fprintf(&b, "# HELP shiplog_log_shipments Logs being sent to the engine: of running runs, and of finished ones not all in yet.\n# TYPE shiplog_log_shipments gauge\nshiplog_log_shipments %d\n", s.shipper.Active())
		fmt.Fprintf(&b, "# HELP shiplog_log_shipped_bytes_total Log bytes the engine acknowledged.\n# TYPE shiplog_log_shipped_bytes_total counter\nshiplog_log_shipped_bytes_total %d\n", s.engine.ShippedBytes())
	}
	fmt.Fprintf(&b, "# HELP shiplog_log_followers Log files being followed.\n# TYPE shiplog_log_followers gauge\nshiplog_log_followers %d\n", s.hub.Followers())
	direct, partial := s.hub.DirectWrites()
	fmt.Fprintf(&b, "# HELP shiplog_stream_direct_writes_total Live log events written straight to waiting viewers by the log's follower.\n# TYPE shiplog_stream_direct_writes_total counter\nshiplog_stream_direct_writes_total %d\n", direct)
	fmt.Fprintf(&b, "# HELP shiplog_stream_direct_partial_writes_total Direct writes the socket took only in part; the viewer wrote the rest.\n# TYPE shiplog_stream_direct_partial_writes_total counter\nshiplog_stream_direct_partial_writes_total %d\n", partial)
	fmt.Fprintf(&b, "# HELP shiplog_stream_cutoffs_total Viewers cut off for falling behind the live log; each catches up from the file.\n# TYPE shiplog_stream_cutoffs_total counter\nshiplog_stream_cutoffs_total %d\n", s.hub.Cutoffs())
	fmt.Fprintf(&b, "# HELP shiplog_lines_streamed_total Log lines sent to viewers.\n# TYPE shiplog_lines_streamed_total counter\nshiplog_lines_streamed_total %d\n", s.linesStreamed.Load())
	d := s.durations
	d.mu.Lock()
	b.WriteString("# HELP shiplog_run_duration_seconds Duration of finished runs.\n# TYPE shiplog_run_duration_seconds histogram\n")
	var cum uint64
	for i, ub := range durationBuckets {
		cum += d.counts[i]
		fmt.Fprintf(&b, "shiplog_run_duration_seconds_bucket{le=\"%g\"} %d\n", ub, cum)
	}
	fmt.Fprintf(&b, "shiplog_run_duration_seconds_bucket{le=\"+Inf\"} %d\n", d.n)
	fmt.Fprintf(&b, "shiplog_run_duration_seconds_sum %g\nshiplog_run_duration_seconds_count %d\n", d.sum, d.n)
	d.mu.Unlock()
	return c.Blob(http.StatusOK, "text/plain; version=0.0.4; charset=utf-8", b.Bytes())
}
