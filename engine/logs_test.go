package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiplog/shiplog/logfile"
)

const deadline = 60 * time.Second

func startEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	if cfg.Dir == "" && cfg.URL == "" {
		cfg.Dir = t.TempDir()
	}
	e, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// logProducer writes a log as the runner does: batches of whole lines,
// the batch's times record (one per distinct millisecond) before its
// bytes, and the index every logfile.IndexEvery lines.
type logProducer struct {
	f, times, idx *os.File
	size, lines   int64
	ms            int64
}

func newLogProducer(t *testing.T, path string) *logProducer {
	t.Helper()
	p := &logProducer{ms: 1_700_000_000_000}
	var err error
	if p.f, err = os.Create(path); err != nil {
		t.Fatal(err)
	}
	if p.times, err = os.Create(logfile.TimesPath(path)); err != nil {
		t.Fatal(err)
	}
	if p.idx, err = os.Create(logfile.IndexPath(path)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.f.Close(); p.times.Close(); p.idx.Close() })
	return p
}

// write appends lines as one batch; newMs says whether they arrived in a
// millisecond of their own.
func (p *logProducer) write(t *testing.T, lines []string, newMs bool) {
	t.Helper()
	if newMs {
		p.ms++
		rec := logfile.TimeRecord{Line: p.lines + 1, At: p.ms}.Encode()
		if _, err := p.times.Write(rec[:]); err != nil {
			t.Fatal(err)
		}
	}
	var out, idx []byte
	for _, l := range lines {
		if p.lines%logfile.IndexEvery == 0 {
			idx = logfile.AppendIndex(idx, p.size+int64(len(out)))
		}
		out = append(append(out, l...), '\n')
		p.lines++
	}
	if _, err := p.f.Write(out); err != nil {
		t.Fatal(err)
	}
	if _, err := p.idx.Write(idx); err != nil {
		t.Fatal(err)
	}
	p.size += int64(len(out))
}

// testLines is a batch of hard lines: empty, CR, invalid UTF-8, a line
// longer than a message, a line of exactly a message.
func testLines(i int) []string {
	switch i % 50 {
	case 7:
		return []string{"", "\r", "carriage\rreturn", "\xff\xfe not utf-8", strings.Repeat("long ", 120_000)} // 600 KB
	case 21:
		return []string{strings.Repeat("x", maxBatch-1), strings.Repeat("y", maxBatch), strings.Repeat("z", maxBatch+1)}
	}
	out := make([]string, 1+i%300)
	for j := range out {
		out[j] = fmt.Sprintf("batch %d line %d: deploying web to production", i, j)
	}
	return out
}

func sameFiles(t *testing.T, want, got string) {
	t.Helper()
	for _, suffix := range []string{"", ".idx", ".times"} {
		w, err := os.ReadFile(want + suffix)
		if err != nil {
			t.Fatal(err)
		}
		g, err := os.ReadFile(got + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w, g) {
			i := 0
			for i < len(w) && i < len(g) && w[i] == g[i] {
				i++
			}
			t.Errorf("log%s: the copy differs at byte %d (%d bytes, want %d)", suffix, i, len(g), len(w))
		}
	}
}

// mirror rebuilds run id's log from the stream into a new file and
// returns its path.
func mirror(t *testing.T, ctx context.Context, e *Engine, id int64) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), fmt.Sprintf("%d.log", id))
	if _, err := e.MirrorLog(ctx, id, dst, nil); err != nil {
		t.Fatal(err)
	}
	return dst
}

// sameCopy checks that dst is src byte for byte, with its index and
// times, and that the stream holds each of its bytes once.
func sameCopy(t *testing.T, e *Engine, id int64, src, dst string) {
	t.Helper()
	sameFiles(t, src, dst)
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if total, msgs := streamBytes(t, e, id); total != fi.Size() {
		t.Errorf("the stream holds %d log bytes in %d messages, want %d: bytes sent twice or lost", total, msgs, fi.Size())
	}
}

// streamBytes returns the log bytes the stream holds for run id, summed
// over its messages: a message sent twice counts twice.
func streamBytes(t *testing.T, e *Engine, id int64) (total int64, msgs int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	info, err := e.logs.Info(ctx, jetstream.WithSubjectFilter(logSubject(id)))
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.State.Subjects[logSubject(id)])
	cons, err := e.logs.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{logSubject(id)}})
	if err != nil {
		t.Fatal(err)
	}
	for msgs < n {
		batch, err := cons.Fetch(n-msgs, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			total += int64(len(m.Data()))
			msgs++
		}
	}
	return total, msgs
}

// A log shipped while it is written arrives in a mirror byte for byte,
// with the same index and times: lines longer than a message, empty
// lines, CRs and invalid UTF-8 included, every byte sent once.
func TestShipAndMirrorExact(t *testing.T) {
	e := startEngine(t, Config{})
	src, dst := filepath.Join(t.TempDir(), "7.log"), filepath.Join(t.TempDir(), "7.log")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	mirrored := make(chan error, 1)
	go func() { _, err := e.MirrorLog(ctx, 7, dst, nil); mirrored <- err }()
	p := newLogProducer(t, src)
	sh := e.ShipLog(ctx, 7, src)
	for i := range 400 {
		p.write(t, testLines(i), i%3 != 2)
		sh.Grew()
	}
	sh.Finish(p.size)
	if err := sh.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-mirrored; err != nil {
		t.Fatal(err)
	}
	sameCopy(t, e, 7, src, dst)
}

// A shipment cut off mid-log (its process died) is taken up by the next
// one where the stream stops: nothing sent twice; and a mirror goes on
// from a copy it made before, exactly.
func TestShipResumesWhereTheStreamStops(t *testing.T) {
	e := startEngine(t, Config{})
	src := filepath.Join(t.TempDir(), "9.log")
	p := newLogProducer(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	first, stop := context.WithCancel(ctx)
	sh := e.ShipLog(first, 9, src)
	for i := range 100 {
		p.write(t, testLines(i), true)
		sh.Grew()
	}
	// Wait until some of it is in, then kill the shipment mid-log.
	for {
		st, err := e.resume(ctx, 9)
		if err != nil {
			t.Fatal(err)
		}
		if st.off > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("nothing shipped")
		case <-time.After(time.Millisecond): // polling the stream's end
		}
	}
	stop()
	_ = sh.Wait(ctx)
	// A replica's copy from before, ending inside a batch: the mirror
	// goes on from it.
	half := testLines(60)[:30]
	p.write(t, half, true)
	dst := filepath.Join(t.TempDir(), "9.log")
	for _, suffix := range []string{"", ".idx", ".times"} {
		b, err := os.ReadFile(src + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.write(t, testLines(60)[30:], false) // the same batch, as the runner's next write in the millisecond
	for i := 100; i < 200; i++ {
		p.write(t, testLines(i), true)
	}
	sh = e.ShipLog(ctx, 9, src)
	sh.Finish(p.size)
	if err := sh.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.MirrorLog(ctx, 9, dst, nil); err != nil {
		t.Fatal(err)
	}
	sameCopy(t, e, 9, src, dst)
}

// A mirror refuses a stream whose messages do not join, rather than
// writing a log with a hole in it.
func TestMirrorRefusesAGap(t *testing.T) {
	e := startEngine(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for _, m := range []struct {
		start int64
		data  string
	}{{0, "one\ntwo\n"}, {8, "three\n"}, {20, "five\n"}} {
		msg := &nats.Msg{Subject: logSubject(3), Data: []byte(m.data), Header: nats.Header{}}
		msg.Header.Set(hdrStart, fmt.Sprint(m.start))
		msg.Header.Set(hdrLine, "1")
		if _, err := e.js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "3.log")
	size, err := e.MirrorLog(ctx, 3, dst, nil)
	if !errors.Is(err, ErrLogGap) {
		t.Fatalf("mirror of a stream with a gap: %v, want ErrLogGap", err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "one\ntwo\nthree\n" || size != 14 {
		t.Errorf("copy %q (%d bytes), want the lines before the gap", got, size)
	}
}
