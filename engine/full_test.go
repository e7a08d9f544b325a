package engine

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// fullDisk mounts a small tmpfs for the test and returns its path and a
// function that fills it.
func fullDisk(t *testing.T) (dir string, fill func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	dir = filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir, func() {
		f, err := os.Create(filepath.Join(dir, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.Write(buf); err != nil {
				return // full
			}
		}
	}
}

// On a full disk the embedded engine refuses writes with ErrFull (an
// ENOSPC) instead of writing: the server would mark the stream broken at
// the first failed write, for good. Once there is room, writes go on, and
// a log shipped meanwhile arrives whole.
func TestFullDiskRefusedThenRecovered(t *testing.T) {
	disk, fill := fullDisk(t)
	e := startEngine(t, Config{Dir: filepath.Join(disk, "engine")})
	recs := e.Records()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := recs.NextID(ctx); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "7.log") // the runner's disk, not full
	p := newLogProducer(t, src)
	p.write(t, testLines(1), false)
	fill()
	sh := e.ShipLog(ctx, 7, src)
	p.write(t, testLines(2), true)
	sh.Grew()
	if _, err := recs.NextID(ctx); !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("next id on a full disk: %v, want ErrFull", err)
	}
	if _, err := recs.Put(ctx, 1, []byte(`{"id":1}`), 0); !errors.Is(err, ErrFull) {
		t.Fatalf("put on a full disk: %v, want ErrFull", err)
	}
	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	if id, err := recs.NextID(ctx); err != nil || id != 2 {
		t.Fatalf("next id once there is room: %d %v, want 2", id, err)
	}
	if _, err := recs.Put(ctx, 2, []byte(`{"id":2}`), 0); err != nil {
		t.Fatal(err)
	}
	sh.Finish(p.size)
	if err := sh.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, src, mirror(t, ctx, e, 7))
}
