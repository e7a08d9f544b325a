package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/api"
)

// The typed client against the real server: what another Go program sees.
func TestAPIClient(t *testing.T) {
	s := startServer(t, cliConfig)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	c, err := api.New(s.URL+"/", "")
	if err != nil {
		t.Fatal(err)
	}

	jobs, err := c.Jobs(ctx)
	if err != nil || len(jobs) != 4 {
		t.Fatalf("Jobs: %d, %v", len(jobs), err)
	}

	// A refusal carries the server's status, message and field.
	_, err = c.Trigger(ctx, "fail", map[string]string{"CODE": "x"})
	se, ok := errors.AsType[*api.StatusError](err)
	if !ok || se.Status != http.StatusBadRequest || se.Field != "CODE" || se.Message == "" {
		t.Fatalf("invalid param: %#v", err)
	}
	if _, err := c.Run(ctx, 999); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("unknown run: %v", err)
	}

	// Trigger, follow to the end with every line once, then poll: 304.
	run, err := c.Trigger(ctx, "ok", nil)
	if err != nil || run.State != api.Queued || run.Links.Page == "" {
		t.Fatalf("Trigger: %+v, %v", run, err)
	}
	var out bytes.Buffer
	var states []api.State
	end, err := c.Follow(ctx, run.ID, &out, api.FollowOptions{Progress: func(r *api.Run) { states = append(states, r.State) }})
	want := s.logFile(run.ID)
	if err != nil || end.State != api.Succeeded || end.Log == nil || end.Log.Bytes != int64(len(want)) || end.Log.Lines != int64(bytes.Count(want, []byte("\n"))) {
		t.Fatalf("Follow: %+v, %v", end, err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("followed %d bytes, the log has %d", out.Len(), len(want))
	}
	if len(states) == 0 || states[len(states)-1] != api.Succeeded {
		t.Errorf("progress saw %v", states)
	}
	p, err := c.PollRun(ctx, run.ID, "", 0)
	if err != nil || !p.Changed || p.ETag == "" || p.Run.State != api.Succeeded {
		t.Fatalf("PollRun: %+v, %v", p, err)
	}
	if again, err := c.PollRun(ctx, run.ID, p.ETag, 0); err != nil || again.Changed {
		t.Fatalf("PollRun with its ETag: %+v, %v", again, err)
	}
	if _, err := c.Cancel(ctx, run.ID); !isStatus(err, http.StatusConflict) {
		t.Fatalf("cancel of a finished run: %v", err)
	}

	// A server that is not there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	gone, _ := api.New("http://"+addr, "")
	if _, err := gone.Run(ctx, 1); !errors.As(err, new(*api.UnreachableError)) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("unreachable: %v", err)
	}
	if _, err := api.New("ftp://x", ""); err == nil {
		t.Fatal("an ftp URL was taken")
	}
}

func isStatus(err error, status int) bool {
	se, ok := errors.AsType[*api.StatusError](err)
	return ok && se.Status == status
}
