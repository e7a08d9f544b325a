package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/sse"
)

// On SIGTERM (the context ending) shiplog takes no new runs, keeps serving
// while running runs finish within the grace period, interrupts those that
// do not, ends streams with a shutdown event, and returns cleanly.
func TestGracefulShutdown(t *testing.T) {
	dir, cfgPath, gate := writeConfig(t, `
max_concurrent_runs: 2
jobs:
  gate:
    env: {GATE: $$GATE}
    run: |`+gateScript)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, Config{ConfigPath: cfgPath, configSet: true, DataDir: filepath.Join(dir, "data"),
			LogLevel: 8, ShutdownGrace: 3 * time.Second, Listener: ln, Ready: ready}, io.Discard)
	}()
	s := &testServer{t: t, URL: <-ready, Data: filepath.Join(dir, "data"), Gate: gate}
	finishes := s.trigger("gate", nil)
	outlives := s.trigger("gate", nil)
	s.waitRun(finishes.ID, isWaiting)
	s.waitRun(outlives.ID, isWaiting)
	queued := s.trigger("gate", nil)

	// Viewers watching when the server stops.
	watch := func(id int64) chan []sse.Event {
		events := make(chan []sse.Event, 1)
		resp, err := http.Get(fmt.Sprintf("%s/api/runs/%d/events", s.URL, id))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer resp.Body.Close()
			var evs []sse.Event
			dec := sse.NewDecoder(resp.Body)
			for {
				ev, err := dec.Next()
				if err != nil {
					events <- evs
					return
				}
				evs = append(evs, ev)
			}
		}()
		return events
	}
	outlivesEvents, queuedEvents := watch(outlives.ID), watch(queued.ID)

	stop() // SIGTERM
	// New runs are refused while running ones finish.
	deadlineAt := time.Now().Add(deadline)
	for {
		code, _, body := s.do("POST", "/api/jobs/gate/runs", "{}")
		if code == http.StatusServiceUnavailable {
			break
		}
		if code != http.StatusCreated || time.Now().After(deadlineAt) {
			t.Fatalf("trigger during shutdown: %d %s", code, body)
		}
		var r api.Run
		json.Unmarshal(body, &r)
		s.release(r.ID) // raced the signal: let it finish too
	}
	s.release(finishes.ID)
	if got := s.waitRun(finishes.ID, isFinished); got.State != "succeeded" {
		t.Errorf("run that finished within the grace period: %s", got.State)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("serve did not return")
	}
	// The run that outlived the grace period was stopped: its viewer got
	// its end. The queued run waits for the next server: its viewer was told
	// to reconnect.
	evs := <-outlivesEvents
	if last := evs[len(evs)-1]; last.Name != "end" || !strings.Contains(last.Data[0], `"state":"interrupted"`) {
		t.Errorf("viewer of the interrupted run: %+v", last)
	}
	evs = <-queuedEvents
	if last := evs[len(evs)-1]; last.Name != "shutdown" {
		t.Errorf("viewer of the queued run: %+v", last)
	}

	// The next server starts the queued run.
	ctx2, stop2 := context.WithCancel(context.Background())
	ready2 := make(chan string, 1)
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	done2 := make(chan error, 1)
	go func() {
		done2 <- serve(ctx2, Config{ConfigPath: cfgPath, configSet: true, DataDir: filepath.Join(dir, "data"),
			LogLevel: 8, ShutdownGrace: time.Second, Listener: ln2, Ready: ready2}, io.Discard)
	}()
	s2 := &testServer{t: t, URL: <-ready2, Gate: gate}
	s2.waitRun(queued.ID, isWaiting)
	s2.release(queued.ID)
	if got := s2.waitRun(queued.ID, isFinished); got.State != "succeeded" {
		t.Errorf("queued run after restart: %s", got.State)
	}
	stop2()
	if err := <-done2; err != nil {
		t.Error(err)
	}
}
