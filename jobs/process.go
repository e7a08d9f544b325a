package jobs

import (
	"bytes"
	"context"
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
	if r.opts.ToolDir != "" {
		// shiplog itself, for `shiplog gate`, ahead of whatever PATH says.
		path := "/usr/local/bin:/usr/bin:/bin"
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
				path = v
				break
			}
		}
		env = append(env, "PATH="+r.opts.ToolDir+string(os.PathListSeparator)+path)
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
	// Cancels from other nodes reach it from the moment its record can
	// say it runs here.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	r.serveCancel(ctx, t.run.ID)
	r.serveDecide(ctx, t.run.ID)
	if !r.claim(t, log) {
		return
	}
	r.finish(t, r.start(t, log), true)
}

// claim records that t starts here. The write is based on the record as
// this runner took it, so it fails if the run changed since (canceled on
// another node): the run is then let go.
func (r *Runner) claim(t *task, log *slog.Logger) bool {
	now := recordTime()
	r.mu.Lock()
	snap := t.run.clone()
	r.mu.Unlock()
	snap.State, snap.StartedAt, snap.Node = Running, &now, r.opts.Node
	// The log is there before the record says where: a reader who sees
	// the run running here finds its file.
	f, err := os.OpenFile(r.LogPath(t.run.ID), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err == nil {
		f.Close()
		err = r.store.Update(context.Background(), snap)
	}
	if err == nil {
		r.mu.Lock()
		t.run.State, t.run.StartedAt, t.run.Node = Running, &now, r.opts.Node
		r.notify(t)
		r.mu.Unlock()
		return true
	}
	if !stale(err) {
		r.finish(t, outcome{state: Failed, msg: fmt.Sprintf("record its start: %v", err)}, true)
		return false
	}
	log.Info("run changed elsewhere before it started here; let go")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.mu.Lock()
	r.running--
	if t.lock != "" && r.locks[t.lock] == t.run.ID {
		delete(r.locks, t.lock)
	}
	delete(r.active, t.run.ID)
	r.notify(t)
	lease := t.lease
	r.mu.Unlock()
	close(t.done)
	if fresh, err := r.store.Fresh(ctx, t.run.ID); err == nil && fresh.State.Finished() {
		_ = lease.Done(ctx)
	} else {
		_ = lease.Release()
	}
	r.kick()
	r.makeRoom()
	return false
}

func exitValue(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// start executes the command and returns how the run ended.
func (r *Runner) start(t *task, log *slog.Logger) outcome {
	select {
	case <-t.stop:
		return outcome{state: t.reason, msg: t.reasonMsg} // canceled as it was starting
	default:
	}
	f, err := os.OpenFile(r.LogPath(t.run.ID), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return outcome{state: Failed, msg: fmt.Sprintf("open log: %v", err)}
	}
	defer f.Close()
	// Not CommandContext: the runner stops a run itself, the whole process
	// group, TERM then KILL after the grace period.
	cmd := exec.Command("/bin/sh", "-c", t.job.Run) //nolint:noctx // see above
	cmd.Dir = t.job.Dir
	cmd.Env = r.commandEnv(t)
	// Its gates: `shiplog gate` in the script asks through this socket.
	gates, err := newGateServer()
	if err != nil {
		return outcome{state: Failed, msg: err.Error()}
	}
	defer func() { _ = gates.ln.Close() }()
	cmd.Env = append(cmd.Env, gates.env()...)
	var pr, pw *os.File
	if tty := t.job.TTY; tty.On() {
		if pr, pw, err = openPTY(tty); err != nil {
			return outcome{state: Failed, msg: err.Error()}
		}
		cmd.Stdin = pw
		cmd.Env = append(cmd.Env, tty.Env()...)
	} else if pr, pw, err = os.Pipe(); err != nil {
		return outcome{state: Failed, msg: fmt.Sprintf("create pipe: %v", err)}
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw // one pipe or terminal: interleaved in order of arrival
	// Its own process group, so cancel reaches every descendant; and killed
	// if this process dies, so kill -9 of the server leaves no shell behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return outcome{state: Failed, msg: fmt.Sprintf("start: %v", err)}
	}
	pgid := cmd.Process.Pid
	// The watchdog kills the group if this process stops renewing the
	// run's lease (see watchdog.go).
	wd, err := startWatchdog(pgid, r.opts.Lease/2, cmd.Env)
	switch {
	case err == nil:
		defer func() {
			r.mu.Lock()
			t.watchdog = nil
			r.mu.Unlock()
			wd.stop()
		}()
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.ESRCH):
		// The job ended before its watchdog could join its group.
	default:
		log.Warn("running the job without a watchdog", "err", err)
	}

	masks := append([]string{gates.token}, r.opts.Secrets...)
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
	if part := r.opts.OnPartial; part != nil {
		id := t.run.ID
		lw.onPartial = func(at int64, text []byte) { part(id, at, text) }
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
	r.mu.Lock()
	t.lw = lw
	t.out = pr
	t.watchdog = wd
	t.run.PID = pgid
	r.notify(t)
	snap := t.run.clone()
	r.mu.Unlock()
	r.persist(t, snap)
	r.kick() // the runs waiting for its lock can say since when
	log.Info("run started", "pid", pgid)
	go r.serveGates(t, gates)

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
				return // EOF; or EIO once every process closed the terminal
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
		grace := r.opts.KillGrace
		if t.grace > 0 {
			grace = min(grace, t.grace)
		}
		kill = time.After(grace)
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
