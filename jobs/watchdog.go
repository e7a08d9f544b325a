package jobs

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Beside each job runs a watchdog: a small process of its own (this
// binary, started again with watchdogEnv set) in the job's process group,
// which kills the whole group when the runner stops renewing its lease on
// the run. The runner writes it a heartbeat after each renewal; a runner
// that dies (the pipe ends), is frozen (SIGSTOP, a stuck host) or has lost
// the engine sends none, and its job dies within half a lease, before
// another runner may take the run's lock. It must be a process of its
// own: a frozen runner runs no timer. It starts after the job, not as its
// parent, so the job starts as fast as ever; the runner's kill of the
// group at the run's end takes the watchdog with it.

// watchdogEnv carries the watchdog's timeout, in milliseconds.
const watchdogEnv = "SHIPLOG_WATCHDOG_MS"

// watchdogFD is the heartbeat pipe's read end in the watchdog.
const watchdogFD = 3

// Watchdog runs the watchdog and exits if this process was started as
// one; otherwise it returns at once. Call it first in main (and TestMain).
func Watchdog() {
	v, ok := os.LookupEnv(watchdogEnv)
	if !ok {
		return
	}
	ms, err := strconv.Atoi(v)
	if err != nil || ms <= 0 {
		fmt.Fprintln(os.Stderr, "shiplog watchdog: bad invocation")
		os.Exit(70)
	}
	watch(time.Duration(ms)*time.Millisecond, os.NewFile(watchdogFD, "heartbeat"))
}

// watch kills this process's group (the job's) when no heartbeat came for
// timeout, or the heartbeats ended. It returns never.
func watch(timeout time.Duration, beats *os.File) {
	// The runner signals the whole group to stop a run: that is for the
	// job; the watchdog stays until the group is killed.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	beat := make(chan bool)
	go func() {
		b := make([]byte, 64)
		for {
			_, err := beats.Read(b)
			beat <- err == nil
			if err != nil {
				return
			}
		}
	}()
	timer := time.NewTimer(timeout)
	for {
		select {
		case alive := <-beat:
			if !alive {
				killGroup() // the runner is gone
			}
			timer.Reset(timeout)
		case <-timer.C:
			killGroup() // the runner stopped renewing its lease
		}
	}
}

// killGroup kills this process's group, this process with it.
func killGroup() {
	_ = syscall.Kill(0, syscall.SIGKILL)
	select {} // until the signal lands
}

// watchdog is a started watchdog: the runner's end of the heartbeat.
type watchdog struct {
	cmd   *exec.Cmd
	heart *os.File
	done  chan struct{} // closed once the process is reaped
}

// startWatchdog starts a watchdog in process group pgid that kills it
// when no heartbeat comes for timeout. Without this binary at hand
// (deleted by an upgrade, say) or with the group gone already (the job
// ended at once), it returns an error and the job runs without one.
func startWatchdog(pgid int, timeout time.Duration, env []string) (*watchdog, error) {
	self, err := os.Executable()
	if err == nil {
		_, err = os.Stat(self)
	}
	if err != nil {
		return nil, fmt.Errorf("find this binary: %w", err)
	}
	beats, heart, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("heartbeat pipe: %w", err)
	}
	defer beats.Close()
	cmd := exec.Command(self) //nolint:noctx // it ends with the job's group
	cmd.Env = append(slices.Clip(env), watchdogEnv+"="+strconv.FormatInt(timeout.Milliseconds(), 10))
	cmd.ExtraFiles = []*os.File{beats}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: pgid}
	if err := cmd.Start(); err != nil {
		heart.Close()
		return nil, fmt.Errorf("start: %w", err)
	}
	w := &watchdog{cmd: cmd, heart: heart, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// beat tells the watchdog the lease was renewed.
func (w *watchdog) beat() {
	_, _ = w.heart.Write([]byte{1}) // it may have gone with its job
}

// stop ends the heartbeat once the job's group is gone (killed, with the
// watchdog in it) and reaps the watchdog.
func (w *watchdog) stop() {
	w.heart.Close()
	<-w.done
}
