package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shiplog/shiplog/logfile"
)

func (r *Runner) commandEnv(t *task) []string {
	env := make([]string, 0, len(os.Environ())+len(t.job.Env)+len(t.run.Params)+2)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(kv, "SHIPLOG_") && !r.cfg.hidden[name] {
			env = append(env, kv)
		}
	}
	for _, sec := range t.job.Secrets {
		env = append(env, sec.Name+"="+sec.Value)
	}
	for k, v := range t.job.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range t.run.Params {
		env = append(env, k+"="+v)
	}
	return append(env,
		"SHIPLOG_RUN_ID="+strconv.FormatInt(t.run.ID, 10),
		"SHIPLOG_JOB="+t.job.Name,
	)
}

// execute runs t to completion; it owns t's process and log file.
func (r *Runner) execute(t *task) {
	defer r.wg.Done()
	log := r.log.With("run_id", t.run.ID, "job", t.job.Name)
	r.finish(t, r.start(t, log), true)
}

func exitValue(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// start executes the command and returns how the run ended.
func (r *Runner) start(t *task, log *slog.Logger) outcome {
	f, err := os.OpenFile(r.LogPath(t.run.ID), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return outcome{state: Failed, msg: fmt.Sprintf("open log: %v", err)}
	}
	defer f.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return outcome{state: Failed, msg: fmt.Sprintf("create pipe: %v", err)}
	}
	defer pr.Close()
	// Not CommandContext: the runner stops a run itself, the whole process
	// group, TERM then KILL after the grace period.
	cmd := exec.Command("/bin/sh", "-c", t.job.Run) //nolint:noctx // see above
	cmd.Dir = t.job.Dir
	cmd.Env = r.commandEnv(t)
	cmd.Stdout, cmd.Stderr = pw, pw // one pipe: interleaved in order of arrival
	// Its own process group, so cancel reaches every descendant; and killed
	// if this process dies, so kill -9 of the server leaves no shell behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return outcome{state: Failed, msg: fmt.Sprintf("start: %v", err)}
	}
	pgid := cmd.Process.Pid

	masks := append([]string(nil), r.opts.Secrets...)
	for _, sec := range t.job.Secrets {
		masks = append(masks, sec.Value)
	}
	idx, err := os.OpenFile(logfile.IndexPath(r.LogPath(t.run.ID)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		idx = nil // readers rebuild the index from the log
	} else {
		defer idx.Close()
	}
	lw := newLogWriter(f, idx, masks, func(c Command, line int64) { r.onCommand(t, c, line) })
	lw.limit = t.job.MaxLogSize
	if grew := r.opts.OnLogGrew; grew != nil {
		id := t.run.ID
		lw.onFlush = func() { grew(id) }
	}
	if times, err := os.OpenFile(logfile.TimesPath(r.LogPath(t.run.ID)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640); err == nil {
		defer times.Close()
		lw.times = logfile.NewTimesWriter(times, -1)
	}
	partialPath := logfile.PartialPath(r.LogPath(t.run.ID))
	if part, err := os.OpenFile(partialPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640); err == nil {
		defer func() { part.Close(); _ = os.Remove(partialPath) }()
		lw.partial = part
	}
	now := recordTime()
	r.mu.Lock()
	t.lw = lw
	t.run.State, t.run.StartedAt, t.run.PID = Running, &now, pgid
	r.notify(t)
	snap := t.run.clone()
	r.mu.Unlock()
	r.persist(t, snap)
	r.kick() // the runs waiting for its lock can say since when
	log.Info("run started", "pid", pgid)

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 64<<10)
		failed := false
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				lw.Write(buf[:n])
				if lw.Err() != nil && !failed {
					failed = true
					t.halt(Failed, fmt.Sprintf("stopped: %v", lw.Err()))
				}
			}
			if err != nil {
				return
			}
		}
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()

	var timeout <-chan time.Time
	if t.job.Timeout > 0 {
		timer := time.NewTimer(t.job.Timeout)
		defer timer.Stop()
		timeout = timer.C
	}
	var (
		reason    State
		reasonMsg string
		stoppedAt time.Time
		kill      <-chan time.Time
		waitErr   error
		stop      = t.stop
	)
	terminate := func() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		kill = time.After(r.opts.KillGrace)
	}
wait:
	for {
		select {
		case waitErr = <-waitDone:
			break wait
		case <-timeout:
			timeout = nil
			if reason == "" {
				reason, reasonMsg, stoppedAt = TimedOut, fmt.Sprintf("timed out after %s", t.job.Timeout), time.Now()
				log.Info("run timed out")
				terminate()
			}
		case <-stop:
			stop = nil
			if reason == "" {
				reason, reasonMsg, stoppedAt = t.reason, t.reasonMsg, time.Now()
				terminate()
			}
		case <-kill:
			kill = nil
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
	// Whatever the shell left in its group (background jobs) goes with it,
	// which also closes their ends of the pipe.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-readDone:
	case <-time.After(2 * time.Second):
		// A descendant that left the group still holds the pipe: stop reading.
		_ = pr.SetReadDeadline(time.Now())
		<-readDone
	}
	if reasonMsg != "" {
		// Why the output ends here, where it ends, as CI logs say it.
		lw.Note(logfile.Note(fmt.Sprintf("%s at %s; the job was stopped", reasonMsg, stoppedAt.UTC().Format("2006-01-02 15:04:05 MST"))))
	} else {
		lw.Close()
	}
	if err := f.Sync(); err != nil && lw.Err() == nil {
		log.Warn("sync log", "err", err)
	}

	var exit *int
	if cmd.ProcessState != nil {
		code := cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		exit = &code
	}
	switch {
	case reason != "":
		return outcome{reason, exit, reasonMsg}
	case lw.Err() != nil:
		return outcome{Failed, exit, lw.Err().Error()}
	case waitErr != nil && !errors.As(waitErr, new(*exec.ExitError)):
		return outcome{Failed, exit, waitErr.Error()}
	case exit != nil && *exit == 0:
		return outcome{state: Succeeded, exit: exit}
	default:
		return outcome{state: Failed, exit: exit}
	}
}

// killLeftovers SIGKILLs the processes of process group pgid that belong to
// run id (checked through their environment, so a reused group ID is never
// touched). It returns how many it killed.
func killLeftovers(id int64, pgid int) int {
	if pgid <= 0 {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	marker := []byte("SHIPLOG_RUN_ID=" + strconv.FormatInt(id, 10) + "\x00")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if processGroup(pid) != pgid {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), append([]byte{0}, marker...)) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// processGroup reads a process's group from /proc/PID/stat; -1 if unknown.
func processGroup(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return -1
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 3 {
		return -1
	}
	g, err := strconv.Atoi(fields[2])
	if err != nil {
		return -1
	}
	return g
}
