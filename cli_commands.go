package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shiplog/shiplog/access"
	"github.com/shiplog/shiplog/api"
)

// paramFlags collects repeated -p KEY=VALUE.
type paramFlags map[string]string

func (p paramFlags) String() string { return "" }

func (p paramFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	p[k] = val
	return nil
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("shiplog "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "server URL (env SHIPLOG_SERVER, default http://127.0.0.1:8080)")
	return fs, server
}

// parseArgs parses flags that may come before or after positional args.
func parseArgs(fs *flag.FlagSet, args []string, want int, usage string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, &exitError{code: exitUsage}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != want {
		return nil, &exitError{code: exitUsage, msg: "usage: " + usage}
	}
	return pos, nil
}

// runAndClient parses a command that names one run: its flags (fs, whose
// --server is server once parsed) and the run; and makes the client.
func runAndClient(fs *flag.FlagSet, server *string, args []string, usage string) (int64, *api.Client, error) {
	pos, err := parseArgs(fs, args, 1, usage)
	if err != nil {
		return 0, nil, err
	}
	id, err := parseRunArg(pos[0])
	if err != nil {
		return 0, nil, err
	}
	c, err := newClient(*server)
	return id, c, err
}

func parseRunArg(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, &exitError{code: exitUsage, msg: fmt.Sprintf("invalid run id %q", s)}
	}
	return id, nil
}

func cliRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, server := newFlags("run", stderr)
	params := paramFlags{}
	fs.Var(params, "p", "parameter KEY=VALUE (repeatable)")
	follow := fs.Bool("follow", false, "stream the log and exit with the run's outcome")
	fs.BoolVar(follow, "f", false, "short for --follow")
	quiet := fs.Bool("q", false, "print only the run id")
	pos, err := parseArgs(fs, args, 1, "shiplog run JOB [-p KEY=VALUE]... [--follow]")
	if err != nil {
		return err
	}
	c, err := newClient(*server)
	if err != nil {
		return err
	}
	run, err := c.Trigger(ctx, pos[0], params)
	if err != nil {
		return err
	}
	page := c.URL(run.Links.Page)
	switch {
	case *follow:
		fmt.Fprintf(stderr, "#%d %s queued: %s\n", run.ID, run.Job, page)
	case *quiet:
		fmt.Fprintln(stdout, run.ID)
		return nil
	default:
		fmt.Fprintf(stdout, "#%d %s queued: %s\n", run.ID, run.Job, page)
		return nil
	}
	return followToEnd(ctx, c, run.ID, false, stdout, stderr)
}

// followToEnd streams a run's log to stdout, with a progress bar on stderr
// when it is a terminal, and exits with the run's outcome.
func followToEnd(ctx context.Context, c *api.Client, id int64, stamped bool, stdout, stderr io.Writer) error {
	var progress func(*api.Run)
	tty := false
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		tty = true
		progress = func(r *api.Run) { fmt.Fprint(stderr, progressLine(r)) }
	}
	out := stdout
	if tty {
		// Clear the bar before each log write so lines and bar do not mix.
		out = writerFunc(func(p []byte) (int, error) {
			fmt.Fprint(stderr, "\r\033[K")
			return stdout.Write(p)
		})
	}
	run, err := c.Follow(ctx, id, out, api.FollowOptions{Stamped: stamped, Progress: progress})
	if we, ok := errors.AsType[*api.WriteError](err); ok {
		return &exitError{code: exitCLIError, msg: we.Error()}
	}
	if err != nil {
		return err
	}
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	fmt.Fprintln(stderr, describeRun(run))
	if code := runExitCode(run); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func cliStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, server := newFlags("status", stderr)
	wait := fs.Bool("wait", false, "wait until the run finishes and exit with its outcome")
	asJSON := fs.Bool("json", false, "print the run as JSON")
	id, c, err := runAndClient(fs, server, args, "shiplog status RUN [--wait] [--json]")
	if err != nil {
		return err
	}
	var (
		run  *api.Run
		raw  []byte
		etag string
	)
	for {
		hold := time.Duration(0)
		if etag != "" {
			hold = 30 * time.Second
		}
		p, err := c.PollRun(ctx, id, etag, hold)
		if err != nil {
			return err
		}
		if p.Changed {
			run, raw, etag = p.Run, p.Raw, p.ETag
			if *wait && !*asJSON && !run.State.Finished() {
				fmt.Fprintln(stderr, describeRun(run))
			}
		}
		if !*wait || run.State.Finished() {
			break
		}
	}
	if *asJSON {
		if _, err := stdout.Write(append(raw, '\n')); err != nil {
			return &exitError{code: exitCLIError, msg: fmt.Sprintf("write: %v", err)}
		}
	} else {
		fmt.Fprintln(stdout, describeRun(run))
	}
	if *wait {
		if code := runExitCode(run); code != 0 {
			return &exitError{code: code}
		}
	}
	return nil
}

func cliLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, server := newFlags("logs", stderr)
	follow := fs.Bool("f", false, "follow the log until the run finishes")
	stamped := fs.Bool("t", false, "prefix each line with when it arrived (RFC 3339, UTC)")
	id, c, err := runAndClient(fs, server, args, "shiplog logs RUN [-f] [-t]")
	if err != nil {
		return err
	}
	if *follow {
		return followToEnd(ctx, c, id, *stamped, stdout, stderr)
	}
	body, err := c.Log(ctx, id, *stamped)
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := io.Copy(stdout, body); err != nil {
		return &exitError{code: exitCLIError, msg: fmt.Sprintf("read log: %v", err)}
	}
	return nil
}

func cliJobs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, server := newFlags("jobs", stderr)
	if _, err := parseArgs(fs, args, 0, "shiplog jobs"); err != nil {
		return err
	}
	c, err := newClient(*server)
	if err != nil {
		return err
	}
	list, err := c.Jobs(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tLAST RUN\tSTATE\tWHEN\tPARAMS")
	for _, j := range list {
		last, state, when := "-", "-", "-"
		if r := j.LastRun; r != nil {
			last, state = "#"+strconv.FormatInt(r.ID, 10), string(r.State)
			when = time.Since(r.QueuedAt).Round(time.Second).String() + " ago"
		}
		var ps []string
		for _, p := range j.Params {
			s := p.Name
			if p.Required {
				s += "*"
			}
			ps = append(ps, s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.Name, last, state, when, strings.Join(ps, " "))
	}
	return tw.Flush()
}

func cliCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, server := newFlags("cancel", stderr)
	id, c, err := runAndClient(fs, server, args, "shiplog cancel RUN")
	if err != nil {
		return err
	}
	run, err := c.Cancel(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "#%d %s: cancel requested\n", run.ID, run.Job)
	return nil
}

func cliToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shiplog token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "deployer", "viewer, deployer or admin")
	pos, err := parseArgs(fs, args, 1, "shiplog token NAME [--role viewer|deployer|admin]")
	if err != nil {
		return err
	}
	r, err := access.ParseRole(*role)
	if err != nil {
		return &exitError{code: exitUsage, msg: err.Error()}
	}
	secret, line, err := access.NewToken(pos[0], r)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Token for %s (%s); shown once, keep it secret:\n\n  %s\n\nAdd this under auth.tokens in the config file, then restart shiplog:\n\nauth:\n  tokens:\n%s\n", pos[0], r, secret, line)
	return nil
}
