package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// child is shiplog running as a separate process (the test binary, see
// TestMain), so a test can kill it as an operator or a crash would.
type child struct {
	cmd     *exec.Cmd
	URL     string
	LogPath string // what it logged
}

// startChild runs `shiplog serve` with args in a child process and waits
// until it says it is serving.
func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	return startChildWith(t, []string{os.Args[0]}, args...)
}

// startChildWith is startChild through a wrapper command (prlimit, say)
// whose last word is the test binary.
func startChildWith(t *testing.T, argv []string, args ...string) *child {
	t.Helper()
	return startProc(t, argv, "shiplog is serving", append([]string{"serve", "--addr", "127.0.0.1:0", "--log-level", "info"}, args...)...)
}

// startProc runs shiplog with args (a command and its flags) through argv
// and waits until it logs ready; its URL is the url= of that line, if any.
func startProc(t *testing.T, argv []string, ready string, args ...string) *child {
	t.Helper()
	enc, _ := json.Marshal(args)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "SHIPLOG_TEST_MAIN="+string(enc))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	urls := make(chan string, 1)
	var (
		mu   sync.Mutex
		said strings.Builder // what it printed first, for a failure
	)
	logPath := filepath.Join(t.TempDir(), args[0]+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			l := sc.Text()
			fmt.Fprintln(logFile, l)
			mu.Lock()
			if said.Len() < 4096 {
				said.WriteString(l + "\n")
			}
			mu.Unlock()
			if strings.Contains(l, ready) {
				u := ""
				for _, f := range strings.Fields(l) {
					if v, ok := strings.CutPrefix(f, "url="); ok {
						u = v
					}
				}
				select {
				case urls <- u:
				default:
				}
			}
		}
		close(urls)
		_, _ = io.Copy(logFile, stderr)
	}()
	select {
	case u, ok := <-urls:
		if !ok {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("child shiplog %s exited before it was ready:\n%s", args[0], said.String())
		}
		return &child{cmd: cmd, URL: u, LogPath: logPath}
	case <-time.After(deadline):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("child shiplog %s was not ready within %s:\n%s", args[0], deadline, said.String())
	}
	return nil
}

// kill9 kills the child as the kernel's OOM killer or an operator would.
func (c *child) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

func TestSecondServerOnDataDirIsRefused(t *testing.T) {
	s := startServer(t, `
jobs:
  gate:
    env: {GATE: $$GATE}
    run: |`+gateScript)
	run := s.trigger("gate", nil)
	s.waitRun(run.ID, isWaiting)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	err = serve(ctx, Config{ConfigPath: filepath.Join(filepath.Dir(s.Data), "shiplog.yaml"), configSet: true,
		DataDir: s.Data, LogLevel: 8, ShutdownGrace: time.Second, Listener: ln}, io.Discard)
	if !errors.Is(err, errDataDirInUse) {
		t.Fatalf("second server on the same data dir: got %v, want it refused", err)
	}
	if !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("the refusal should name the holder's PID %d: %v", os.Getpid(), err)
	}
	// The first server's run went on untouched.
	s.release(run.ID)
	if got := s.waitRun(run.ID, isFinished); got.State != "succeeded" {
		t.Errorf("first server's run: %s, want succeeded", got.State)
	}
}

func TestKilledServerDoesNotBlockRestart(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	c := startChild(t, "--data", data)
	if _, err := lockDataDir(data); !errors.Is(err, errDataDirInUse) {
		t.Fatalf("while the child serves, the lock should be held: %v", err)
	}
	c.kill9(t)
	unlock, err := lockDataDir(data)
	if err != nil {
		t.Fatalf("after kill -9 the data dir should be free: %v", err)
	}
	unlock()
	startChild(t, "--data", data) // and a real restart serves
}

// kill -9 of the server loses none of a run's output: the bytes after the
// last newline reach the log at the next start, masked.
func TestPartialLastLineSurvivesKill9(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "token")
	os.WriteFile(secret, []byte("s3cr3t-value\n"), 0o600)
	dir, cfg, _ := writeConfig(t, `
jobs:
  prompt:
    secrets: [{name: TOKEN, file: `+secret+`}]
    run: |
      echo "first line"
      printf 'Password for %s: ' "$TOKEN"
      sleep 60
`)
	data := filepath.Join(dir, "data")
	c := startChild(t, "--config", cfg, "--data", data)
	s := &testServer{t: t, URL: c.URL, Data: data}
	run := s.trigger("prompt", nil)
	partial := filepath.Join(data, "logs", fmt.Sprintf("%d.log.partial", run.ID))
	waitFor(t, "the unfinished line to be kept", func() bool {
		b, _ := os.ReadFile(partial)
		return string(b) == "Password for ***: "
	}, deadline)
	c.kill9(t)

	c = startChild(t, "--config", cfg, "--data", data)
	s = &testServer{t: t, URL: c.URL, Data: data}
	got := s.waitRun(run.ID, isFinished)
	if got.State != "interrupted" {
		t.Errorf("state %s, want interrupted", got.State)
	}
	if log := string(s.logFile(run.ID)); log != "first line\nPassword for ***: \n" {
		t.Errorf("log after kill -9 and restart: %q", log)
	}
	if got.Log.Lines != 2 {
		t.Errorf("log lines %d, want 2", got.Log.Lines)
	}
}
