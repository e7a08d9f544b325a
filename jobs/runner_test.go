package jobs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shiplog/shiplog/logfile"
)

const deadline = 15 * time.Second

// testRunner starts a runner for the given YAML jobs, stopped at cleanup.
func testRunner(t *testing.T, yaml string) (*Runner, string) {
	t.Helper()
	dir := t.TempDir()
	n := testNode(t, dir, nil, mustParse(t, yaml), RunnerOptions{KillGrace: 300 * time.Millisecond})
	return n.runner, dir
}

// waitRun waits, on the runner's change notifications, until cond holds.
func waitRun(t *testing.T, r *Runner, id int64, cond func(*Run) bool) *Run {
	t.Helper()
	timeout := time.After(deadline)
	for {
		ch := r.Watch(id)
		run, err := r.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if cond(run) {
			return run
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("run #%d: condition not met; last %+v", id, run)
		}
	}
}

func finished(r *Run) bool { return r.State.Finished() }

func trigger(t *testing.T, r *Runner, job string, params map[string]string) *Run {
	t.Helper()
	run, err := r.Trigger(context.Background(), job, params, "test")
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func readLog(t *testing.T, r *Runner, id int64) string {
	t.Helper()
	b, err := os.ReadFile(r.LogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// processGone waits until pid no longer runs (gone or a zombie).
func processGone(t *testing.T, pid int) {
	t.Helper()
	// A process is known by its pid and its start time: under load a pid
	// can be taken by a new process soon after the old one goes.
	stat := func() (state byte, start string, ok bool) {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		i := bytes.LastIndexByte(data, ')')
		if err != nil || i < 0 || len(data) < i+2 {
			return 0, "", false
		}
		f := strings.Fields(string(data[i+2:])) // from field 3, the state
		if len(f) < 20 {
			return 0, "", false
		}
		return f[0][0], f[19], true // field 22: start time
	}
	_, first, _ := stat()
	timeout := time.After(deadline)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		state, start, ok := stat()
		if !ok || state == 'Z' || start != first {
			return
		}
		select {
		case <-tick.C:
		case <-timeout:
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still running", pid)
		}
	}
}

func TestRunOutcomes(t *testing.T) {
	r, _ := testRunner(t, `
jobs:
  ok: {run: "echo hello; echo to stderr >&2"}
  fail: {run: "echo bad; exit 3"}
  partial: {run: "printf 'first\nno newline at end'"}
  longline: {run: "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo after"}
  utf8: {run: "printf 'bad \\377\\376 bytes\\n\\000nul\\n'"}
  crlf: {run: "printf 'a\\r\\nprogress 10%%\\rprogress 100%%\\n'"}
  killed: {run: "kill -9 $$"}
`)
	tests := []struct {
		job      string
		state    State
		exit     int
		wantLog  string
		wantSize int64 // checked when wantLog is empty
	}{
		{"ok", Succeeded, 0, "hello\nto stderr\n", 0},
		{"fail", Failed, 3, "bad\n", 0},
		{"partial", Succeeded, 0, "first\nno newline at end\n", 0},
		{"longline", Succeeded, 0, "", 1<<20 + 1 + 6},
		{"utf8", Succeeded, 0, "bad \xff\xfe bytes\n\x00nul\n", 0},
		{"crlf", Succeeded, 0, "a\r\nprogress 10%\rprogress 100%\n", 0},
		{"killed", Failed, 137, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.job, func(t *testing.T) {
			t.Parallel()
			run := waitRun(t, r, trigger(t, r, tt.job, nil).ID, finished)
			if run.State != tt.state || run.ExitCode == nil || *run.ExitCode != tt.exit {
				t.Fatalf("state %s exit %v, want %s %d", run.State, exitValue(run.ExitCode), tt.state, tt.exit)
			}
			got := readLog(t, r, run.ID)
			if tt.wantLog != "" && got != tt.wantLog {
				t.Errorf("log = %q, want %q", got, tt.wantLog)
			}
			if tt.wantSize != 0 && int64(len(got)) != tt.wantSize {
				t.Errorf("log size = %d, want %d", len(got), tt.wantSize)
			}
			if run.LogBytes != int64(len(got)) || run.LogLines != int64(strings.Count(got, "\n")) {
				t.Errorf("recorded %d bytes %d lines; file has %d bytes %d lines", run.LogBytes, run.LogLines, len(got), strings.Count(got, "\n"))
			}
			if run.StartedAt == nil || run.FinishedAt == nil || run.FinishedAt.Before(*run.StartedAt) {
				t.Errorf("timestamps %v %v", run.StartedAt, run.FinishedAt)
			}
		})
	}
}

func TestLineLongerThanLimitIsSplitAndMarked(t *testing.T) {
	r, _ := testRunner(t, `
jobs:
  huge: {run: "head -c 10485760 /dev/zero | tr '\\0' y; echo"}
`)
	run := waitRun(t, r, trigger(t, r, "huge", nil).ID, finished)
	if run.State != Succeeded {
		t.Fatalf("state %s", run.State)
	}
	lines := strings.Split(strings.TrimSuffix(readLog(t, r, run.ID), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("10 MiB line became %d lines, want 3", len(lines))
	}
	total := 0
	for i, l := range lines {
		marked := strings.HasSuffix(l, logfile.SplitMarker)
		if marked != (i < 2) {
			t.Errorf("piece %d marked=%v", i, marked)
		}
		total += len(strings.TrimSuffix(l, logfile.SplitMarker))
	}
	if total != 10<<20 {
		t.Errorf("kept %d bytes of 10 MiB", total)
	}
}

func TestParamsReachCommandOnlyAsEnvironment(t *testing.T) {
	r, dir := testRunner(t, `
jobs:
  echo:
    run: 'printf "%s\n" "$NOTE"'
    params: [{name: NOTE}]
`)
	marker := filepath.Join(dir, "pwned")
	evil := fmt.Sprintf("$(touch %s); `touch %s`; touch %s && echo 'x' | sh", marker, marker, marker)
	run := waitRun(t, r, trigger(t, r, "echo", map[string]string{"NOTE": evil}).ID, finished)
	if run.State != Succeeded {
		t.Fatalf("state %s", run.State)
	}
	if got := readLog(t, r, run.ID); got != evil+"\n" {
		t.Errorf("log = %q, want the value verbatim", got)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a parameter value was executed")
	}
}

func TestMaskingProgressAndAnnotations(t *testing.T) {
	r, _ := testRunner(t, `
jobs:
  j:
    run: |
      echo "::add-mask::hunter22"
      echo "password is hunter22, again hunter22"
      printf 'split hun'; sleep 0.1; echo 'ter22 across writes'
      echo "::progress::40 Migrating database"
      echo "::warning title=Slow::took long"
      echo "::error::broke"
      echo "::notice::fine"
      echo "::progress::90 Almost"
`)
	run := waitRun(t, r, trigger(t, r, "j", nil).ID, finished)
	log := readLog(t, r, run.ID)
	if strings.Contains(log, "hunter22") {
		t.Errorf("secret in log:\n%s", log)
	}
	for _, want := range []string{"::add-mask::***", "password is ***, again ***", "split *** across writes"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if run.Progress == nil || *run.Progress != (Progress{90, "Almost"}) {
		t.Errorf("progress = %+v", run.Progress)
	}
	want := []Annotation{{Level: "warning", Message: "took long", Title: "Slow", Line: 5}, {Level: "error", Message: "broke", Line: 6}, {Level: "notice", Message: "fine", Line: 7}}
	if fmt.Sprint(run.Annotations) != fmt.Sprint(want) {
		t.Errorf("annotations = %+v, want %+v", run.Annotations, want)
	}
	// What the store holds matches what the runner reported.
	stored, err := r.store.Get(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(stored.Annotations) != fmt.Sprint(want) || *stored.Progress != *run.Progress {
		t.Errorf("stored %+v", stored)
	}
}

// Annotations and progress are bounded in bytes (a line can be 4 MiB), cut
// on a character boundary; the log keeps the whole line.
func TestAnnotationsBoundedInBytes(t *testing.T) {
	r, _ := testRunner(t, `
jobs:
  j:
    run: |
      long=$(awk 'BEGIN { for (i = 0; i < 150000; i++) printf "é" }')
      echo "::error title=$long::$long"
      echo "::progress::50 $long"
`)
	run := waitRun(t, r, trigger(t, r, "j", nil).ID, finished)
	if len(run.Annotations) != 1 || run.Progress == nil {
		t.Fatalf("annotations %d, progress %v", len(run.Annotations), run.Progress)
	}
	a := run.Annotations[0]
	for what, v := range map[string]string{"message": a.Message, "title": a.Title, "progress": run.Progress.Message} {
		if len(v) > maxNoteBytes || !utf8.ValidString(v) || !strings.HasSuffix(v, "…") {
			t.Errorf("%s: %d bytes, valid UTF-8 %v, ends %q", what, len(v), utf8.ValidString(v), v[max(0, len(v)-8):])
		}
	}
	if len(a.Title) > maxTitleBytes {
		t.Errorf("title: %d bytes, want at most %d", len(a.Title), maxTitleBytes)
	}
	if log := readLog(t, r, run.ID); len(log) < 900_000 {
		t.Errorf("log: %d bytes, want the whole lines", len(log))
	}
}

// ::stop-commands::TOKEN turns command parsing off until ::TOKEN::, so
// untrusted text adds no mask and no annotation; an annotation keeps the
// place in the source its properties name, unescaped.
func TestStopCommandsAndAnnotationProperties(t *testing.T) {
	r, _ := testRunner(t, `
jobs:
  j:
    run: |
      echo "::stop-commands::pause-42"
      echo "::add-mask::visible"
      echo "::error::not an annotation"
      echo "visible text"
      echo "::pause-42::"
      echo "::error file=app.go,line=12,col=5,endLine=14,endColumn=2,title=Build%3A failed::it broke%0Atwice"
      echo "##[warning]old form"
`)
	run := waitRun(t, r, trigger(t, r, "j", nil).ID, finished)
	want := []Annotation{
		{Level: "error", Message: "it broke\ntwice", Title: "Build: failed", Line: 6, File: "app.go", StartLine: 12, EndLine: 14, StartColumn: 5, EndColumn: 2},
		{Level: "warning", Message: "old form", Line: 7},
	}
	if !reflect.DeepEqual(run.Annotations, want) {
		t.Errorf("annotations\n%+v\nwant\n%+v", run.Annotations, want)
	}
	if log := readLog(t, r, run.ID); !strings.Contains(log, "visible text") {
		t.Errorf("a mask added while commands were off was applied:\n%s", log)
	}
}

// treeJob starts a grandchild that sleeps, reports its pid as progress, and
// waits; ignoreTerm makes the shell ignore SIGTERM so only SIGKILL works.
const treeJob = `
    run: |
      %s
      sleep 300 &
      echo "::progress::1 $!"
      wait
`

func grandchild(t *testing.T, r *Runner, id int64) int {
	t.Helper()
	run := waitRun(t, r, id, func(r *Run) bool { return r.Progress != nil || r.State.Finished() })
	if run.Progress == nil {
		t.Fatalf("run finished early: %+v", run)
	}
	pid, err := strconv.Atoi(run.Progress.Message)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestCancelAndTimeoutKillTheProcessTree(t *testing.T) {
	r, _ := testRunner(t, "jobs:\n  tree:"+fmt.Sprintf(treeJob, "")+
		"  stubborn:"+fmt.Sprintf(treeJob, "trap '' TERM")+
		"  slow:\n    timeout: 1s"+fmt.Sprintf(treeJob, ""))
	tests := []struct {
		job    string
		cancel bool
		want   State
	}{
		{"tree", true, Canceled},
		{"stubborn", true, Canceled},
		{"slow", false, TimedOut},
	}
	for _, tt := range tests {
		t.Run(tt.job, func(t *testing.T) {
			t.Parallel()
			id := trigger(t, r, tt.job, nil).ID
			pid := grandchild(t, r, id)
			if tt.cancel {
				if err := r.Cancel(context.Background(), id, "test"); err != nil {
					t.Fatal(err)
				}
			}
			run := waitRun(t, r, id, finished)
			if run.State != tt.want {
				t.Fatalf("state %s, want %s", run.State, tt.want)
			}
			processGone(t, pid)
			if err := r.Cancel(context.Background(), id, "test"); err == nil {
				t.Error("cancel of a finished run succeeded")
			}
		})
	}
}

func TestCancelQueued(t *testing.T) {
	r, _ := testRunner(t, "max_concurrent_runs: 1\njobs:\n  tree:"+fmt.Sprintf(treeJob, ""))
	first := trigger(t, r, "tree", nil).ID
	grandchild(t, r, first)
	second := trigger(t, r, "tree", nil).ID
	if err := r.Cancel(context.Background(), second, "test"); err != nil {
		t.Fatal(err)
	}
	if run := waitRun(t, r, second, finished); run.State != Canceled || run.StartedAt != nil {
		t.Errorf("queued run after cancel: %+v", run)
	}
	if err := r.Cancel(context.Background(), first, "test"); err != nil {
		t.Fatal(err)
	}
	waitRun(t, r, first, finished)
}

// gateJob blocks until the test creates its release file.
const gateJob = `
    run: |
      echo "::progress::1 started"
      while [ ! -e "$GATE/release-$SHIPLOG_RUN_ID" ]; do sleep 0.02; done
`

func release(t *testing.T, dir string, id int64) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "release-"+strconv.FormatInt(id, 10)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func started(r *Run) bool { return r.Progress != nil }

func TestLocks(t *testing.T) {
	dir := t.TempDir()
	r, _ := testRunner(t, fmt.Sprintf(`
jobs:
  deploy:
    lock: deploy-$TARGET
    env: {GATE: %[1]s}
    params: [{name: TARGET, required: true}]
%[2]s
  other:
    env: {GATE: %[1]s}
%[2]s
`, dir, gateJob))
	a := trigger(t, r, "deploy", map[string]string{"TARGET": "prod"}).ID
	waitRun(t, r, a, started)
	b := trigger(t, r, "deploy", map[string]string{"TARGET": "prod"}).ID
	// Runs behind a held lock do not hold back others: a different target and
	// another job both start while b waits.
	c := trigger(t, r, "deploy", map[string]string{"TARGET": "staging"}).ID
	d := trigger(t, r, "other", nil).ID
	waitRun(t, r, c, started)
	waitRun(t, r, d, started)
	if run, _ := r.Get(context.Background(), b); run.State != Queued {
		t.Fatalf("second prod deploy is %s while the first holds the lock", run.State)
	}
	release(t, dir, a)
	ra := waitRun(t, r, a, finished)
	rb := waitRun(t, r, b, started)
	if rb.StartedAt.Before(*ra.FinishedAt) {
		t.Errorf("b started %v before a finished %v", rb.StartedAt, ra.FinishedAt)
	}
	for _, id := range []int64{b, c, d} {
		release(t, dir, id)
		if run := waitRun(t, r, id, finished); run.State != Succeeded {
			t.Errorf("#%d %s", id, run.State)
		}
	}
}

// The run waiting for a lock gets the slot its holder frees, before a run
// queued after it that needs no lock: the line stays first come, first
// served. Several rounds, as the handover is a race when it is wrong.
func TestLocksNextRunGoesFirst(t *testing.T) {
	dir := t.TempDir()
	r, _ := testRunner(t, fmt.Sprintf(`
max_concurrent_runs: 1
jobs:
  deploy:
    lock: prod
    env: {GATE: %[1]s}
%[2]s
  other:
    env: {GATE: %[1]s}
%[2]s
`, dir, gateJob))
	holder := trigger(t, r, "deploy", nil).ID
	waitRun(t, r, holder, started)
	for range 8 {
		next := trigger(t, r, "deploy", nil).ID
		after := trigger(t, r, "other", nil).ID
		waitRun(t, r, after, func(run *Run) bool { return run.Wait != nil })
		release(t, dir, holder)
		waitRun(t, r, next, func(run *Run) bool {
			a, _ := r.Get(context.Background(), after)
			return started(run) || a.State != Queued
		})
		if run, _ := r.Get(context.Background(), after); run.State != Queued {
			t.Fatalf("#%d, queued after #%d, is %s: it took the slot #%d freed", after, next, run.State, holder)
		}
		release(t, dir, next)
		waitRun(t, r, after, started)
		holder = trigger(t, r, "deploy", nil).ID
		release(t, dir, after)
		waitRun(t, r, holder, started)
	}
	release(t, dir, holder)
	waitRun(t, r, holder, finished)
}

func TestConcurrencyLimit(t *testing.T) {
	dir := t.TempDir()
	r, _ := testRunner(t, fmt.Sprintf(`
max_concurrent_runs: 2
jobs:
  j:
    env: {OUT: %s}
    run: |
      n=$(ls "$OUT" | wc -l)
      echo "$SHIPLOG_RUN_ID" > "$OUT/$SHIPLOG_RUN_ID"
      echo "running alongside $n"
      echo "$SHIPLOG_RUN_ID" >> "$OUT.order"
      rm "$OUT/$SHIPLOG_RUN_ID"
`, dir))
	var ids []int64
	for range 8 {
		ids = append(ids, trigger(t, r, "j", nil).ID)
	}
	for _, id := range ids {
		if run := waitRun(t, r, id, finished); run.State != Succeeded {
			t.Fatalf("#%d %s", id, run.State)
		}
	}
	// At most two at once: count overlapping [start, finish] intervals.
	runs, _ := r.List(context.Background(), Filter{Job: "j"})
	for _, a := range runs {
		overlap := 0
		for _, b := range runs {
			if a != b && !b.StartedAt.After(*a.StartedAt) && b.FinishedAt.After(*a.StartedAt) {
				overlap++
			}
		}
		if overlap > 1 {
			t.Errorf("#%d started while %d others ran", a.ID, overlap)
		}
	}
}

func TestQueueIsFIFO(t *testing.T) {
	r, _ := testRunner(t, "max_concurrent_runs: 1\njobs:\n  j: {run: 'echo $SHIPLOG_RUN_ID'}\n")
	var ids []int64
	for range 6 {
		ids = append(ids, trigger(t, r, "j", nil).ID)
	}
	var prev *Run
	for _, id := range ids {
		run := waitRun(t, r, id, finished)
		if prev != nil && run.StartedAt.Before(*prev.FinishedAt) {
			t.Errorf("#%d started at %v, before #%d finished at %v", run.ID, run.StartedAt, prev.ID, prev.FinishedAt)
		}
		prev = run
	}
}

func TestRetentionPrunesRunsAndLogs(t *testing.T) {
	r, _ := testRunner(t, "keep_runs: 2\nmax_concurrent_runs: 1\njobs:\n  j: {run: echo hi}\n")
	var ids []int64
	for range 4 {
		id := trigger(t, r, "j", nil).ID
		waitRun(t, r, id, finished)
		ids = append(ids, id)
	}
	runs, err := r.List(context.Background(), Filter{Job: "j"})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].ID != ids[3] || runs[1].ID != ids[2] {
		t.Fatalf("kept %v", runs)
	}
	if _, err := os.Stat(r.LogPath(ids[0])); !os.IsNotExist(err) {
		t.Errorf("log of pruned run remains: %v", err)
	}
	// Finished runs are kept at hand, but not past their pruning.
	for i, id := range ids {
		_, err := r.Get(context.Background(), id)
		if kept := i >= 2; kept != (err == nil) || (!kept && !errors.Is(err, ErrNotFound)) {
			t.Errorf("run #%d: get: %v", id, err)
		}
	}
}

// TestMain lets a test re-execute this binary as a server that is then
// killed with SIGKILL.
func TestMain(m *testing.M) {
	Watchdog()
	if url := os.Getenv("SHIPLOG_TEST_RUNNER_URL"); url != "" {
		helperRunner(url, os.Getenv("SHIPLOG_TEST_RUNNER_DIR"))
		return
	}
	if dir := os.Getenv("SHIPLOG_TEST_HELPER_DIR"); dir != "" {
		helperServer(dir)
		return
	}
	os.Exit(m.Run())
}

func helperServer(dir string) {
	cfg, err := ParseConfig("helper.yaml", []byte("jobs:\n  tree:\n    run: |\n      echo before kill\n      sleep 300 &\n      echo \"::progress::1 $!\"\n      wait\n"))
	if err != nil {
		panic(err)
	}
	n, err := startNode(context.Background(), dir, nil, cfg, RunnerOptions{Zone: DefaultZone})
	if err != nil {
		panic(err)
	}
	r := n.runner
	go r.Run(context.Background())
	run, err := r.Trigger(context.Background(), "tree", nil, "helper")
	if err != nil {
		panic(err)
	}
	for {
		ch := r.Watch(run.ID)
		cur, _ := r.Get(context.Background(), run.ID)
		if cur.Progress != nil {
			fmt.Printf("%d %s\n", run.ID, cur.Progress.Message)
			break
		}
		<-ch
	}
	select {} // until killed
}

func TestRestartAfterKill9MarksInterrupted(t *testing.T) {
	dir := t.TempDir()
	cmd, out := startHelper(t, "SHIPLOG_TEST_HELPER_DIR="+dir)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) })
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	var pid int
	if _, err := fmt.Sscan(line, &id, &pid); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	once.Do(func() {
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
	})

	cfg, _ := ParseConfig("helper.yaml", []byte("jobs:\n  tree: {run: 'true'}\n"))
	n, err := startNode(context.Background(), dir, nil, cfg, RunnerOptions{Zone: DefaultZone})
	if err != nil {
		t.Fatal(err)
	}
	defer n.stop()
	r := n.runner
	if err := r.Recover(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	processGone(t, pid)
	run, err := r.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if run.State != Interrupted || run.FinishedAt == nil || run.Error == "" {
		t.Errorf("after restart: %+v", run)
	}
	if got := readLog(t, r, id); got != "before kill\n::progress::1 "+strconv.Itoa(pid)+"\n" {
		t.Errorf("log = %q", got)
	}
	if run.LogLines != 2 {
		t.Errorf("log lines = %d", run.LogLines)
	}
}

func TestSecretsReachTheCommandButNoLog(t *testing.T) {
	const fromEnv, fromFile = "env-s3cret-value", "file-s3cret-value"
	t.Setenv("TEST_DB_PASSWORD", fromEnv)
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(fromFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, _ := testRunner(t, fmt.Sprintf(`
jobs:
  leaky:
    secrets:
      - {name: DB_PASSWORD, env: TEST_DB_PASSWORD}
      - {name: API_KEY, file: %s}
    run: |
      echo "plain: $DB_PASSWORD $API_KEY"
      printf 'base64: %%s\n' "$(printf %%s "$DB_PASSWORD" | base64)"
      printf 'url: %%s\n' "$(printf %%s "$API_KEY" | od -An -tx1 | tr -d ' \n')"
      printf 'split: env-s3c'; sleep 0.1; printf 'ret-value\n'
      [ "${#DB_PASSWORD}" = 16 ] && echo "length ok"
  other:
    run: 'echo "source: ${TEST_DB_PASSWORD:-hidden}"'
`, path))
	run := waitRun(t, r, trigger(t, r, "leaky", nil).ID, finished)
	log := readLog(t, r, run.ID)
	for _, leak := range []string{fromEnv, fromFile, "ZW52LXMzY3JldC12YWx1ZQ", "66696c652d73336372"} {
		if strings.Contains(log, leak) {
			t.Errorf("log shows %q:\n%s", leak, log)
		}
	}
	if !strings.Contains(log, "plain: *** ***") || !strings.Contains(log, "split: ***") || !strings.Contains(log, "length ok") {
		t.Errorf("log:\n%s", log)
	}
	other := waitRun(t, r, trigger(t, r, "other", nil).ID, finished)
	if got := readLog(t, r, other.ID); got != "source: hidden\n" {
		t.Errorf("another job sees the secret's source variable: %q", got)
	}
}

// A full disk while a job runs: the run fails saying so, and another run at
// the same time is unaffected. The log of the first is /dev/full, which
// answers every write with ENOSPC.
func TestFullDiskFailsOnlyThatRun(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	r, _ := testRunner(t, `
jobs:
  big: {run: "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done"}
  small: {run: "echo fine"}
`)
	// IDs are sequential: the next run's log is made a full disk.
	probe := waitRun(t, r, trigger(t, r, "small", nil).ID, finished)
	if err := os.Symlink("/dev/full", r.LogPath(probe.ID+1)); err != nil {
		t.Fatal(err)
	}
	big := trigger(t, r, "big", nil)
	if big.ID != probe.ID+1 {
		t.Fatalf("run id %d, want %d", big.ID, probe.ID+1)
	}
	small := trigger(t, r, "small", nil)
	got := waitRun(t, r, big.ID, finished)
	if got.State != Failed || !strings.Contains(got.Error, "no space left on device") {
		t.Errorf("run on a full disk: %s %q", got.State, got.Error)
	}
	if got := waitRun(t, r, small.ID, finished); got.State != Succeeded || readLog(t, r, small.ID) != "fine\n" {
		t.Errorf("other run: %s", got.State)
	}
}

// The sparse line index beside the log holds where lines 1, 4097, 8193, …
// start.
func TestRunnerWritesLineIndex(t *testing.T) {
	r, _ := testRunner(t, `jobs:
  j: {run: "awk 'BEGIN { for (i = 1; i <= 10000; i++) print \"line\", i }'"}
`)
	run := waitRun(t, r, trigger(t, r, "j", nil).ID, finished)
	log := readLog(t, r, run.ID)
	idx, err := os.ReadFile(r.LogPath(run.ID) + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	if len(idx) != 3*8 {
		t.Fatalf("index has %d bytes, want 3 entries", len(idx))
	}
	for k := range 3 {
		off := int(binary.LittleEndian.Uint64(idx[k*8:]))
		want := fmt.Sprintf("line %d\n", k*logfile.IndexEvery+1)
		if !strings.HasPrefix(log[off:], want) || (off > 0 && log[off-1] != '\n') {
			t.Errorf("entry %d: offset %d holds %q, want %q", k, off, log[off:off+12], want)
		}
	}
}

// A log over its job's max_log_size is cut at a whole line and ends with a
// visible marker; the run itself is not failed for it.
func TestLogCutAtMaxLogSize(t *testing.T) {
	r, _ := testRunner(t, `
jobs:
  loud:
    max_log_size: 2KiB
    run: "i=0; while [ $i -lt 1000 ]; do echo \"line $i of output\"; i=$((i+1)); done; echo done"
`)
	run := waitRun(t, r, trigger(t, r, "loud", nil).ID, finished)
	log := readLog(t, r, run.ID)
	if run.State != Succeeded || !run.LogCut {
		t.Errorf("state %s, cut %v", run.State, run.LogCut)
	}
	if !strings.HasSuffix(log, "\n"+logfile.CutMarker+"\n") || len(log) > 2048+len(logfile.CutMarker)+1 {
		t.Errorf("log of %d bytes ends %q", len(log), log[max(0, len(log)-120):])
	}
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasSuffix(l, " of output") {
			t.Fatalf("cut mid-line: %q", l)
		}
	}
	if run.LogLines != int64(len(lines)) || run.LogBytes != int64(len(log)) {
		t.Errorf("counted %d lines %d bytes; file has %d lines %d bytes", run.LogLines, run.LogBytes, len(lines), len(log))
	}
	stored, _ := r.store.Get(context.Background(), run.ID)
	if !stored.LogCut {
		t.Error("the store does not know the log was cut")
	}
}

// Workflow commands in output the cut discarded do nothing: no annotation
// points at a line that is not in the log. awk writes it all at once, so
// the cut falls inside one write.
func TestLogCutDropsCommandsOfDiscardedLines(t *testing.T) {
	r, _ := testRunner(t, `
jobs:
  loud:
    max_log_size: 2KiB
    run: |
      awk 'BEGIN { print "::warning::kept"; for (i = 0; i < 150; i++) printf "line %d of output\n", i; print "::error::after the cut"; print "::progress::99 after the cut" }'
`)
	run := waitRun(t, r, trigger(t, r, "loud", nil).ID, finished)
	if !run.LogCut {
		t.Fatal("the log was not cut")
	}
	if len(run.Annotations) != 1 || run.Annotations[0].Message != "kept" || run.Annotations[0].Line != 1 {
		t.Errorf("annotations %+v, want only the kept warning on line 1", run.Annotations)
	}
	if run.Progress != nil && run.Progress.Percent == 99 {
		t.Errorf("progress %+v from a discarded line", run.Progress)
	}
}

// A job with tty: true runs with a terminal as its stdin, stdout and
// stderr, of the size configured, with TERM set; its lines reach the log as
// it wrote them (\n, not the terminal's \r\n), all of them, however much it
// writes before it exits; a job without stays on a pipe.
func TestJobInATerminal(t *testing.T) {
	r, _ := testRunner(t, `
jobs:
  term:
    tty: {cols: 132, rows: 43}
    run: |
      [ -t 1 ] && [ -t 2 ] && echo "a terminal"
      stty size
      echo "TERM=$TERM COLUMNS=$COLUMNS LINES=$LINES"
      printf 'one\ntwo\r\n'
      echo "to stderr" >&2
      seq 1 200000 | tail -c 2000000
  default-size: {tty: true, run: "stty size"}
  pipe: {run: "[ -t 1 ] && echo terminal || echo pipe"}
  grep-tty: {tty: true, run: "echo a match | grep --color=auto match"}
  grep-pipe: {run: "echo a match | grep --color=auto match"}
`)
	run := waitRun(t, r, trigger(t, r, "term", nil).ID, finished)
	if run.State != Succeeded {
		t.Fatalf("state %s: %s", run.State, run.Error)
	}
	got := readLog(t, r, run.ID)
	want := "a terminal\n43 132\nTERM=xterm-256color COLUMNS=132 LINES=43\none\ntwo\r\nto stderr\n"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("log starts %q, want %q", got[:min(len(got), 200)], want)
	}
	nums := strings.Split(strings.TrimSuffix(strings.TrimPrefix(got, want), "\n"), "\n")
	if len(nums) != 200000 || nums[0] != "1" || nums[len(nums)-1] != "200000" {
		t.Fatalf("the job's last output: %d lines, %q … %q", len(nums), nums[0], nums[len(nums)-1])
	}
	for _, tc := range []struct{ job, want string }{
		{"default-size", "40 120\n"},
		{"pipe", "pipe\n"},
		// Tools that colour for a person do so in the terminal.
		{"grep-tty", "a \x1b[01;31m\x1b[Kmatch\x1b[m\x1b[K\n"},
		{"grep-pipe", "a match\n"},
	} {
		run := waitRun(t, r, trigger(t, r, tc.job, nil).ID, finished)
		if got := readLog(t, r, run.ID); got != tc.want {
			t.Errorf("%s: log %q, want %q", tc.job, got, tc.want)
		}
	}
}

// A run records its ::group:: sections (##[group] too) as they open and
// close: nested ones with their depth, each with its lines and times; one
// with an ::error:: inside failed, one the run ended in takes the run's
// end; past maxGroups the rest are left out without closing the wrong one.
func TestRunRecordsItsGroups(t *testing.T) {
	r, _ := testRunner(t, `
jobs:
  groups:
    run: |
      echo "::group::Build"
      echo "compiling"
      echo "::group::Tests"
      echo "::error::one failed"
      echo "::endgroup::"
      echo "::endgroup::"
      echo "##[group]Deploy"
      echo "deploying"
      exit 3
  many:
    run: |
      echo "::group::outer"
      i=0; while [ $i -lt 250 ]; do i=$((i+1)); echo "::group::g$i"; echo "::endgroup::"; done
      echo "::endgroup::"
`)
	run := waitRun(t, r, trigger(t, r, "groups", nil).ID, finished)
	type got struct {
		Title            string
		Line, End, Depth int64
		Outcome          State
		Ended            bool
	}
	var gs []got
	for _, g := range run.Groups {
		gs = append(gs, got{g.Title, g.Line, g.EndLine, int64(g.Depth), run.GroupOutcome(g), g.End != nil})
		if g.End != nil && g.End.Before(g.Start) || g.Start.Before(*run.StartedAt) {
			t.Errorf("group %q: times %v to %v, run started %v", g.Title, g.Start, g.End, run.StartedAt)
		}
	}
	want := []got{
		{"Build", 1, 6, 0, Failed, true},
		{"Tests", 3, 5, 1, Failed, true},
		{"Deploy", 7, 0, 0, Failed, false}, // the run failed inside it
	}
	if !slices.Equal(gs, want) {
		t.Fatalf("groups\n got %+v\nwant %+v", gs, want)
	}
	// The record keeps them: read back from the store.
	stored, err := r.Get(context.Background(), run.ID)
	if err != nil || len(stored.Groups) != 3 || stored.Groups[1].Title != "Tests" || stored.Groups[1].EndLine != 5 {
		t.Fatalf("stored groups %+v (%v)", stored.Groups, err)
	}

	many := waitRun(t, r, trigger(t, r, "many", nil).ID, finished)
	if len(many.Groups) != maxGroups {
		t.Fatalf("%d groups kept, want %d", len(many.Groups), maxGroups)
	}
	if outer := many.Groups[0]; outer.Title != "outer" || outer.EndLine != 502 {
		t.Errorf("the outer group closed at line %d, want 502 (its own endgroup)", outer.EndLine)
	}
}
