package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is the file in the data dir whose OS lock marks the one server
// that owns it.
const lockFile = "shiplog.lock"

// errDataDirInUse is returned when another server holds the data dir.
var errDataDirInUse = errors.New("data dir in use")

// lockDataDir takes an exclusive lock on the data dir, so two servers never
// run the same queued deploys or write the same logs. The lock is flock(2)
// on a file: the kernel drops it when the holder dies, however it dies, so
// a killed server never blocks a restart. The file holds the holder's PID,
// for the message a second server prints.
func lockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	// O_CLOEXEC (os.OpenFile's default) keeps the lock out of jobs' hands:
	// a job that outlives its server must not hold the data dir.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = "process " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is held by %s (another shiplog serve); stop it or pass another --data", errDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// nodeName names this process in the records of the runs it runs: the
// host's name and an id kept in the data dir, so the name is the same
// after a restart (the node settles its own runs) and differs between
// two data dirs on one host.
func nodeName(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "node-id")
	id, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("make a node id: %w", err)
		}
		id = []byte(hex.EncodeToString(b))
		if err := os.WriteFile(path, id, 0o640); err != nil {
			return "", fmt.Errorf("keep the node id: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("read the node id: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	return host + "-" + strings.TrimSpace(string(id)), nil
}
