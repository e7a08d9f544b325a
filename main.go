// Command shiplog is a deployment log streaming dashboard: it runs jobs from a
// config file, streams their logs live to the browser, and answers scripts
// polling for status. The same binary is the CLI for its HTTP API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/shiplog/shiplog/jobs"
)

func main() {
	jobs.Watchdog() // if this process is one, it runs and exits here
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "shiplog:", ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "shiplog:", err)
		os.Exit(exitCLIError)
	}
}

// run is the whole program, so tests can start it like main does.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if c, rest, err := leadingClientFlags(args); err != nil {
		return err
	} else if c != "" {
		cmd, args = c, rest
	}
	switch cmd {
	case "serve":
		cfg, err := parseServeFlags(args, stderr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stderr)
	case "runner":
		cfg, err := parseRunnerFlags(args, stderr)
		if err != nil {
			return err
		}
		return runRunner(ctx, cfg, stderr)
	case "engine":
		f, err := parseEngineFlags(args, stderr)
		if err != nil {
			return err
		}
		return runEngine(ctx, f, stderr)
	case "run":
		return exitFor(cliRun(ctx, args, stdout, stderr))
	case "status":
		return exitFor(cliStatus(ctx, args, stdout, stderr))
	case "logs":
		return exitFor(cliLogs(ctx, args, stdout, stderr))
	case "jobs":
		return exitFor(cliJobs(ctx, args, stdout, stderr))
	case "cancel":
		return exitFor(cliCancel(ctx, args, stdout, stderr))
	case "approve", "reject":
		return exitFor(cliDecide(ctx, cmd, args, stdout, stderr))
	case "gate":
		return cliGate(ctx, args, stdout, stderr)
	case "token":
		return cliToken(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return &exitError{code: exitUsage, msg: fmt.Sprintf("unknown command %q\n\n%s", cmd, usage)}
	}
}

// clientCommands are the commands that talk to a server.
var clientCommands = map[string]bool{"run": true, "status": true, "logs": true, "jobs": true, "cancel": true, "approve": true, "reject": true}

// leadingClientFlags reads "shiplog --server URL run JOB": client flags put
// before the command. It returns the command and its arguments with those
// flags first, or "" when args hold no client command (a serve command
// line). A serve flag before a client command is an error that says so.
func leadingClientFlags(args []string) (cmd string, rest []string, err error) {
	var lead []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			if !clientCommands[a] && len(lead) == 0 {
				return "", nil, nil
			}
			// After --server, a word that is no client command is a
			// mistyped one, not a serve command line.
			return a, append(lead, args[i+1:]...), nil
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "server" {
			for _, later := range args[i+1:] {
				if clientCommands[later] {
					return "", nil, &exitError{code: exitUsage, msg: fmt.Sprintf("%s is not a flag of %q: give client flags (--server) before or after the command, and serve flags only to serve", a, later)}
				}
			}
			return "", nil, nil
		}
		lead = append(lead, a)
		if !hasValue && i+1 < len(args) {
			i++
			lead = append(lead, args[i])
		}
	}
	return "", nil, nil
}

const usage = `shiplog: deploy jobs, watch their logs live, poll their status.

Server:
  shiplog [serve] [--addr 127.0.0.1:8080] [--config shiplog.yaml] [--data ./shiplog-data]
  shiplog runner --nats URL [--zone default] [--config shiplog.yaml] [--data ./shiplog-runner]
                                                 run the jobs of a zone from the engine's queue; no pages
  shiplog engine --name N --listen ADDR --cluster ADDR --routes ADDR,ADDR [--data ./shiplog-engine]
                                                 one node of a 3-node engine cluster; replicas and runners join with --nats

Client (server from --server or SHIPLOG_SERVER, default http://127.0.0.1:8080):
  shiplog run JOB [-p KEY=VALUE]... [--follow]   trigger a run; --follow streams its log and exits with its outcome
  shiplog status RUN [--wait] [--json]           state and progress; --wait blocks until the run finishes
  shiplog logs RUN [-f]                          print the log; -f follows it
  shiplog jobs                                   list jobs and their last run
  shiplog cancel RUN                             cancel a queued or running run
  shiplog approve RUN [--reason WHY]             answer the gate a run waits at: yes
  shiplog reject RUN [--reason WHY]              answer the gate a run waits at: no

In a job's script:
  shiplog gate "QUESTION" [--timeout 30m]        wait for a person to approve; exits 0 approved,
                                                 1 rejected, 2 timed out, 3 the run ended
  shiplog token NAME [--role deployer]           make a token; prints it and the config line to add

Exit codes: 0 succeeded; the job's exit code when it failed; 64 usage;
65 invalid params or unknown job; 69 server unreachable; 70 other CLI error;
75 interrupted; 77 not permitted (no or insufficient token); 124 timed out;
130 canceled.
`
