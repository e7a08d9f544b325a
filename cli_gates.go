package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/shiplog/shiplog/jobs"
)

// Exit codes of `shiplog gate`, documented in the README: the script's
// answer. A rejection and a timeout are both a no.
const (
	exitGateRejected = 1
	exitGateTimedOut = 2
	exitGateEnded    = 3 // the run ended while it waited
)

// cliGate stops the script that runs it at a gate until someone answers:
// `shiplog gate "Run migrations on production?" --timeout 30m`. It talks
// to the runner of the run it is part of, through the socket and token in
// its environment.
func cliGate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("gate", stderr)
	timeout := fs.Duration("timeout", jobs.DefaultGateTimeout, "how long to wait for an answer; no answer is a no")
	pos, err := parseArgs(fs, args, 1, `shiplog gate "QUESTION" [--timeout 30m]`)
	if err != nil {
		return err
	}
	addr, token := os.Getenv(jobs.GateAddrEnv), os.Getenv(jobs.GateTokenEnv)
	if addr == "" || token == "" {
		return &exitError{code: exitUsage, msg: "shiplog gate runs inside a shiplog job: " + jobs.GateAddrEnv + " and " + jobs.GateTokenEnv + " are not set"}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return &exitError{code: exitUnreachable, msg: fmt.Sprintf("reach the runner: %v", err)}
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.Close() }()
	req, _ := json.Marshal(map[string]any{"token": token, "question": pos[0], "timeout": *timeout})
	if _, err := conn.Write(append(req, '\n')); err != nil {
		return &exitError{code: exitUnreachable, msg: fmt.Sprintf("ask the runner: %v", err)}
	}
	type answer struct {
		ID       int       `json:"id"`
		Deadline time.Time `json:"deadline"`
		Decision string    `json:"decision"`
		By       string    `json:"by"`
		Reason   string    `json:"reason"`
		Error    string    `json:"error"`
	}
	dec := json.NewDecoder(io.LimitReader(conn, 64<<10))
	for {
		var a answer
		if err := dec.Decode(&a); err != nil {
			return &exitError{code: exitGateEnded, msg: "gate: the runner went away before an answer"}
		}
		switch {
		case a.Error != "":
			return &exitError{code: exitUsage, msg: "gate: " + a.Error}
		case a.Decision == "":
			continue // the gate is open; the answer comes next
		case a.Decision == string(jobs.Approved):
			return nil
		case a.Decision == string(jobs.Rejected):
			return &exitError{code: exitGateRejected, msg: gateAnswerLine(a.Decision, a.By, a.Reason)}
		case a.Decision == string(jobs.GateTimedOut):
			return &exitError{code: exitGateTimedOut, msg: gateAnswerLine(a.Decision, a.By, a.Reason)}
		default:
			return &exitError{code: exitGateEnded, msg: gateAnswerLine(a.Decision, a.By, a.Reason)}
		}
	}
}

func gateAnswerLine(decision, by, reason string) string {
	s := "gate " + strings.ReplaceAll(decision, "_", " ") + " by " + by
	if reason != "" {
		s += ": " + reason
	}
	return s
}

// cliDecide answers the gate a run waits at: shiplog approve RUN, shiplog
// reject RUN [--reason WHY].
func cliDecide(ctx context.Context, decision string, args []string, stdout, stderr io.Writer) error {
	fs, server := newFlags(decision, stderr)
	reason := fs.String("reason", "", "why, recorded with the answer")
	id, c, err := runAndClient(fs, server, args, "shiplog "+decision+" RUN [--reason WHY]")
	if err != nil {
		return err
	}
	run, err := c.Decide(ctx, id, decision, *reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "#%d %s: gate %s\n", run.ID, run.Job, map[string]string{"approve": "approved", "reject": "rejected"}[decision])
	return nil
}
