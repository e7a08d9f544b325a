package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/shiplog/shiplog/api"
)

// Exit codes of the CLI, documented in the README. A failed run exits with
// the job's own code.
const (
	exitOK          = 0
	exitFailed      = 1 // a failed run with no exit code of its own
	exitUsage       = 64
	exitInvalid     = 65 // unknown job or run, invalid params
	exitUnreachable = 69
	exitCLIError    = 70
	exitInterrupted = 75
	exitNoPerm      = 77 // no token, or the token may not do this
	exitTimedOut    = 124
	exitCanceled    = 130
)

// exitError makes the program exit with code after printing msg.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// runExitCode is what the CLI exits with for a finished run.
func runExitCode(r *api.Run) int {
	switch r.State {
	case api.Succeeded:
		return exitOK
	case api.Failed:
		if r.ExitCode != nil && *r.ExitCode > 0 && *r.ExitCode < 256 {
			return *r.ExitCode
		}
		return exitFailed
	case api.Canceled:
		return exitCanceled
	case api.TimedOut:
		return exitTimedOut
	case api.Interrupted:
		return exitInterrupted
	}
	return exitCLIError
}

// newClient is the client of server (or $SHIPLOG_SERVER, or the default
// address), with $SHIPLOG_TOKEN.
func newClient(server string) (*api.Client, error) {
	if server == "" {
		server = envOr("SHIPLOG_SERVER", "http://127.0.0.1:8080")
	}
	c, err := api.New(server, os.Getenv("SHIPLOG_TOKEN"))
	if err != nil {
		return nil, &exitError{code: exitUsage, msg: "--" + err.Error()}
	}
	return c, nil
}

// exitFor gives a client command's error its exit code: the server's
// refusals by their status, a server out of reach or a broken stream 69.
func exitFor(err error) error {
	if se, ok := errors.AsType[*api.StatusError](err); ok {
		code := exitCLIError
		switch se.Status {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity:
			code = exitInvalid
		case http.StatusUnauthorized, http.StatusForbidden:
			code = exitNoPerm
		case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
			code = exitUnreachable
		}
		return &exitError{code: code, msg: se.Error()}
	}
	if _, ok := errors.AsType[*api.UnreachableError](err); ok {
		return &exitError{code: exitUnreachable, msg: err.Error()}
	}
	return err
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressLine renders a one-line progress bar for a terminal.
func progressLine(r *api.Run) string {
	const width = 24
	filled := r.Progress.Percent * width / 100
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	return fmt.Sprintf("\r\033[K#%d %s %s %3d%% %s", r.ID, r.State, bar, r.Progress.Percent, truncate(r.Progress.Message, 50))
}

func describeRun(r *api.Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s: %s", r.ID, r.Job, r.State)
	if r.ExitCode != nil && r.State.Finished() {
		fmt.Fprintf(&b, " (exit %d)", *r.ExitCode)
	}
	if r.Progress.Message != "" || r.Progress.Percent > 0 {
		fmt.Fprintf(&b, " %d%% %s", r.Progress.Percent, r.Progress.Message)
	}
	if r.Error != "" {
		fmt.Fprintf(&b, " — %s", r.Error)
	}
	if r.Wait != nil && r.State == api.Queued {
		fmt.Fprintf(&b, " — %s", r.Wait.Describe(time.Now()))
	}
	if r.State == api.Waiting && len(r.Gates) > 0 {
		g := r.Gates[len(r.Gates)-1]
		fmt.Fprintf(&b, " — gate %d: %s (until %s; shiplog approve %d or shiplog reject %d)", g.ID, g.Question, g.Deadline.Local().Format("15:04:05"), r.ID, r.ID)
	}
	return b.String()
}
