package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/shiplog/shiplog/api"
)

const cliConfig = `
jobs:
  gate:
    env: {GATE: $$GATE}
    run: |` + gateScript + `
  ok:
    run: |
      i=0
      while [ $i -lt 3000 ]; do i=$((i+1)); echo "line $i"; done
      printf 'cr\rline\nbad \377\n'
      echo "::progress::100 done"
      printf 'no newline'
  fail:
    params: [{name: CODE, default: "3", pattern: '[0-9]+'}]
    run: echo "failing with $CODE"; exit $CODE
  slow:
    timeout: 200ms
    run: sleep 30
`

// cli runs the shiplog CLI in-process against s and returns its exit code
// and output.
func cli(t *testing.T, s *testServer, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if s != nil {
		args = append([]string{args[0], "--server", s.URL}, args[1:]...)
	}
	err := run(ctx, args, &stdout, &stderr)
	code := 0
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) {
			// Not Fatal: cli runs in goroutines too. The code says it failed.
			t.Errorf("shiplog %v: %v", args, err)
			return -1, stdout.String(), stderr.String()
		}
		code = ee.code
		stderr.WriteString(ee.msg)
	}
	return code, stdout.String(), stderr.String()
}

func TestCLIRunFollowReproducesLogAndExitCode(t *testing.T) {
	s := startServer(t, cliConfig)
	tests := []struct {
		job    string
		params []string
		code   int
	}{
		{"ok", nil, 0},
		{"fail", nil, 3},
		{"fail", []string{"-p", "CODE=42"}, 42},
		{"slow", nil, exitTimedOut},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.job, tt.params), func(t *testing.T) {
			code, out, errOut := cli(t, s, append(append([]string{"run", tt.job}, tt.params...), "--follow")...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, errOut)
			}
			var id int64
			if _, err := fmt.Sscanf(errOut, "#%d", &id); err != nil {
				t.Fatalf("stderr %q does not start with the run id", errOut)
			}
			if want := string(s.logFile(id)); out != want {
				t.Errorf("stdout (%d bytes) differs from the log (%d bytes)", len(out), len(want))
			}
			if !strings.Contains(errOut, s.URL+"/runs/") {
				t.Errorf("stderr lacks the page URL: %q", errOut)
			}
		})
	}
}

// gateRun starts the gate job with `shiplog run -q` and waits until it
// waits at its gate.
func gateRun(t *testing.T, s *testServer) int64 {
	t.Helper()
	code, out, _ := cli(t, s, "run", "gate", "-q")
	if code != 0 {
		t.Fatalf("run: %d", code)
	}
	var id int64
	fmt.Sscan(out, &id)
	s.waitRun(id, isWaiting)
	return id
}

func TestCLIStatusWaitCancelLogsJobs(t *testing.T) {
	s := startServer(t, cliConfig)
	id := gateRun(t, s)

	code, out, _ := cli(t, s, "status", fmt.Sprint(id))
	if code != 0 || !strings.Contains(out, "running 1% waiting") {
		t.Errorf("status: %d %q", code, out)
	}
	code, out, _ = cli(t, s, "status", fmt.Sprint(id), "--json")
	if code != 0 || !strings.Contains(out, `"state":"running"`) {
		t.Errorf("status --json: %d %q", code, out)
	}
	type result struct {
		code int
		out  string
	}
	waited := make(chan result, 1)
	go func() {
		code, out, _ := cli(t, s, "status", fmt.Sprint(id), "--wait")
		waited <- result{code, out}
	}()
	if code, out, _ := cli(t, s, "cancel", fmt.Sprint(id)); code != 0 || !strings.Contains(out, "cancel requested") {
		t.Errorf("cancel: %d %q", code, out)
	}
	select {
	case r := <-waited:
		if r.code != exitCanceled || !strings.Contains(r.out, "canceled") {
			t.Errorf("status --wait: %d %q", r.code, r.out)
		}
	case <-time.After(deadline):
		t.Fatal("status --wait did not return")
	}
	if code, _, errOut := cli(t, s, "cancel", fmt.Sprint(id)); code != exitInvalid || !strings.Contains(errOut, "already finished") {
		t.Errorf("second cancel: %d %q", code, errOut)
	}
	code, out, _ = cli(t, s, "logs", fmt.Sprint(id))
	if code != 0 || out != string(s.logFile(id)) {
		t.Errorf("logs: %d %q", code, out)
	}
	code, out, _ = cli(t, s, "jobs")
	if code != 0 || !strings.Contains(out, "gate") || !strings.Contains(out, "canceled") || !strings.Contains(out, "CODE") {
		t.Errorf("jobs: %d\n%s", code, out)
	}
}

func TestCLIErrors(t *testing.T) {
	s := startServer(t, cliConfig)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name string
		s    *testServer
		args []string
		code int
		want string
	}{
		{"unknown job", s, []string{"run", "nope"}, exitInvalid, "unknown job"},
		{"invalid param", s, []string{"run", "fail", "-p", "CODE=x"}, exitInvalid, "CODE"},
		{"malformed param flag", s, []string{"run", "fail", "-p", "CODE"}, exitUsage, "KEY=VALUE"},
		{"unknown run", s, []string{"status", "999"}, exitInvalid, "not found"},
		{"bad run id", s, []string{"status", "abc"}, exitUsage, "invalid run id"},
		{"missing arg", s, []string{"logs"}, exitUsage, "usage"},
		{"unknown command", nil, []string{"deploy"}, exitUsage, "unknown command"},
		{"unknown command after --server", nil, []string{"--server", dead, "wait", "3"}, exitUsage, `unknown command "wait"`},
		{"unreachable", nil, []string{"jobs", "--server", dead}, exitUnreachable, "cannot reach"},
		{"bad server url", nil, []string{"jobs", "--server", "ftp://x"}, exitUsage, "want a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := cli(t, tt.s, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tt.code, errOut, tt.want)
			}
		})
	}
}

// Every line carries the time it arrived: the times API, the stamped raw log
// and `shiplog logs -t` (also while following) agree, and each time falls
// within the run.
func TestLineTimesStampedLogAndCLI(t *testing.T) {
	s := startServer(t, cliConfig)
	id := gateRun(t, s)
	type result struct {
		code     int
		out, err string
	}
	followed := make(chan result, 1)
	go func() {
		code, out, errOut := cli(t, s, "logs", fmt.Sprint(id), "-f", "-t")
		followed <- result{code, out, errOut}
	}()
	s.release(id)
	run := s.waitRun(id, isFinished)
	var f result
	select {
	case f = <-followed:
	case <-time.After(deadline):
		t.Fatal("logs -f -t did not return")
	}
	if f.code != 0 {
		t.Fatalf("logs -f -t: exit %d: %s", f.code, f.err)
	}

	_, _, raw := s.do("GET", fmt.Sprintf("/api/runs/%d/log?timestamps=1", id), "")
	if f.out != string(raw) {
		t.Errorf("logs -f -t differs from the stamped raw log:\n%s\n%s", f.out, raw)
	}
	if code, out, _ := cli(t, s, "logs", fmt.Sprint(id), "-t"); code != 0 || out != string(raw) {
		t.Errorf("logs -t: %d %q", code, out)
	}

	var times struct{ Times [][2]int64 }
	if code, _, body := s.do("GET", fmt.Sprintf("/api/runs/%d/times?from=1&to=100", id), ""); code != 200 || json.Unmarshal(body, &times) != nil || len(times.Times) == 0 || times.Times[0][0] != 1 {
		t.Fatalf("times: %d %s", code, body)
	}
	timeOf := func(line int64) time.Time {
		var at int64
		for _, r := range times.Times {
			if r[0] <= line {
				at = r[1]
			}
		}
		return time.UnixMilli(at).UTC()
	}
	lines := strings.SplitAfter(string(raw), "\n")
	lines = lines[:len(lines)-1]
	var unstamped strings.Builder
	prev := run.StartedAt.Truncate(time.Millisecond)
	for i, l := range lines {
		stamp, rest, ok := strings.Cut(l, " ")
		at, err := time.Parse("2006-01-02T15:04:05.000Z07:00", stamp)
		if !ok || err != nil {
			t.Fatalf("line %d %q has no time: %v", i+1, l, err)
		}
		if at.Before(prev) || at.After(*run.FinishedAt) {
			t.Errorf("line %d at %v: outside %v..%v or before the line above", i+1, at, prev, run.FinishedAt)
		}
		if !at.Equal(timeOf(int64(i + 1))) {
			t.Errorf("line %d stamped %v, times API says %v", i+1, at, timeOf(int64(i+1)))
		}
		prev = at
		unstamped.WriteString(rest)
	}
	if unstamped.String() != string(s.logFile(id)) {
		t.Errorf("without their times the lines are not the log:\n%s", unstamped.String())
	}
}

// On a terminal, run --follow draws a progress bar on stderr, clears it
// before each log write and at the end, and the log on stdout stays clean.
func TestCLIProgressBarOnTerminal(t *testing.T) {
	master, tty := openPTY(t)
	s := startServer(t, cliConfig)
	var screen bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "--server", s.URL, "gate", "--follow"}, &stdout, tty) }()
	s.waitRun(1, isWaiting)
	s.release(1)
	if err := <-done; err != nil {
		t.Fatalf("run --follow: %v", err)
	}
	tty.Close()
	<-read
	out := screen.String()
	for _, want := range []string{"\r\x1b[K#1 running ", "  1% waiting", "#1 gate: succeeded (exit 0)"} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal lacks %q:\n%q", want, out)
		}
	}
	if strings.Contains(stdout.String(), "\x1b[") || stdout.String() != string(s.logFile(1)) {
		t.Errorf("stdout is not the log: %q", stdout.String())
	}
}

// openPTY opens a pseudo-terminal pair; the test is skipped where there is
// none.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	ioctl := func(req uintptr, arg unsafe.Pointer) error {
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), req, uintptr(arg)); errno != 0 {
			return errno
		}
		return nil
	}
	var unlock int32
	var n uint32
	if err := ioctl(syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Skipf("unlock pty: %v", err)
	}
	if err := ioctl(syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		t.Skipf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pty: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// A follow over a flaky link goes on as long as each reconnect gets
// further, however many times it is cut, and reproduces the log exactly.
func TestCLIFollowSurvivesAFlakyLink(t *testing.T) {
	s := startServer(t, `
jobs:
  many:
    run: |
      i=0
      while [ $i -lt 40000 ]; do i=$((i+1)); echo "line $i of a log that a flaky link cuts many times"; done
`)
	many := s.trigger("many", nil)
	s.waitRun(many.ID, isFinished)
	proxy := newCutProxy(t, strings.TrimPrefix(s.URL, "http://"), 48<<10) // more than an event: each connection gets further
	ctx, cancel := context.WithTimeout(context.Background(), 2*deadline)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"logs", "--server", proxy.URL(), fmt.Sprint(many.ID), "-f"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("logs -f through a flaky link: %v (after %d cuts, %d bytes)", err, proxy.cuts.Load(), stdout.Len())
	}
	if cuts := proxy.cuts.Load(); cuts <= api.MaxFollowFailures+10 {
		t.Fatalf("only %d cuts: the test needs more than the old limit of 30", cuts)
	}
	if want := s.logFile(many.ID); !bytes.Equal(stdout.Bytes(), want) {
		t.Errorf("followed %d bytes, the log has %d", stdout.Len(), len(want))
	}
}

func TestCLIClientFlagsBeforeTheCommand(t *testing.T) {
	s := startServer(t, cliConfig)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"--server", s.URL, "run", "fail", "-p", "CODE=0", "--follow"}, &stdout, &stderr); err != nil {
		t.Errorf("--server before run: %v (%s)", err, stderr.String())
	}
	if err := run(ctx, []string{"--server=" + s.URL, "jobs"}, &stdout, &stderr); err != nil {
		t.Errorf("--server=URL before jobs: %v", err)
	}
	err := run(ctx, []string{"--addr", "127.0.0.1:0", "run", "ok"}, &stdout, &stderr)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitUsage || !strings.Contains(ee.msg, "--addr is not a flag of \"run\"") {
		t.Errorf("a serve flag before run: %v", err)
	}
}
