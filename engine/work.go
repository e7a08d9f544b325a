package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The queue of runs is a work-queue stream. Each zone has one line for
// runs that need no lock (work.ZONE.any) and one per lock
// (work.ZONE.lock.TOKEN). Every line is a durable consumer, so its order
// and what is taken survive any process: the line of a lock lets at most
// one run out at a time (MaxAckPending 1), which makes the lock
// cluster-wide and first come first served. A run taken from a line is
// leased: its message's ack wait is the lease, renewed while the run
// lives, and a run whose lease lapses (its runner died or froze) is
// handed out again, to be marked interrupted.
var workStream = jetstream.StreamConfig{
	Name:        "WORK",
	Description: "shiplog: runs waiting to start, and leases on the started ones",
	Subjects:    []string{"work.>"},
	Retention:   jetstream.WorkQueuePolicy,
	Storage:     jetstream.FileStorage,
	// A retried enqueue of one run adds it once.
	Duplicates: 2 * time.Minute,
}

// DefaultLease is how long a runner may go without renewing its lease on a
// run before the run is handed out again.
const DefaultLease = 10 * time.Second

// announce is where a new line is made known to the zone's runners, which
// also list the lines now and then in case they missed it.
func announce(zone string) string { return "shiplog.lines." + zone }

// line returns the subject and consumer name of the line of lock ("" for
// runs without one) in zone. Lock names are any text: they are hashed into
// a subject token.
func line(zone, lock string) (subject, consumer string) {
	if lock == "" {
		return "work." + zone + ".any", "any-" + zone
	}
	sum := sha256.Sum256([]byte(lock))
	tok := hex.EncodeToString(sum[:12])
	return "work." + zone + ".lock." + tok, "lock-" + zone + "-" + tok
}

// ofZone reports whether the line named name is one of zone's (zone
// "prod" does not take the lines of zone "prod-eu").
func ofZone(name, zone string) bool {
	if name == "any-"+zone {
		return true
	}
	tok, ok := strings.CutPrefix(name, "lock-"+zone+"-")
	if !ok || len(tok) != 24 {
		return false
	}
	_, err := hex.DecodeString(tok)
	return err == nil
}

// ValidZone reports whether zone can name a zone: letters, digits, - and _.
func ValidZone(zone string) bool {
	if zone == "" || len(zone) > 64 {
		return false
	}
	return strings.Trim(zone, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == ""
}

func (e *Engine) lineConfig(subject, name string, locked bool) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       e.lease,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
		MaxAckPending: 10000,
	}
	if locked {
		cfg.MaxAckPending = 1
	}
	return cfg
}

// Enqueue puts run id at the end of the line of lock in zone. Enqueueing a
// run again within two minutes adds nothing.
func (e *Engine) Enqueue(ctx context.Context, zone, lock string, id int64) error {
	if !ValidZone(zone) {
		return fmt.Errorf("enqueue run %d: bad zone %q", id, zone)
	}
	subject, name := line(zone, lock)
	if _, known := e.lines.Load(name); !known {
		if _, err := e.js.CreateOrUpdateConsumer(ctx, workStream.Name, e.lineConfig(subject, name, lock != "")); err != nil {
			return fmt.Errorf("enqueue run %d: open the line of %q: %w", id, lock, full(err))
		}
		e.lines.Store(name, true)
		_ = e.nc.Publish(announce(zone), []byte(name))
	}
	if err := e.room(256); err != nil {
		return err
	}
	msg := nats.NewMsg(subject)
	msg.Data = strconv.AppendInt(nil, id, 10)
	msg.Header.Set(jetstream.MsgIDHeader, "run-"+strconv.FormatInt(id, 10))
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("enqueue run %d: %w", id, full(err))
	}
	return nil
}

// Lease is a run taken from its line. Until Done or Release, the run is
// this process's: no one else is handed it while the lease is renewed.
type Lease struct {
	id          int64
	redelivered bool
	msg         jetstream.Msg
	once        sync.Once
	over        chan struct{}
	// next, for a run of a lock, is closed once the lock's next run, if
	// any, has been handed out after this one's Done.
	next chan struct{}
	quit <-chan struct{} // closed when the line is no longer taken from
	// taking is set while take has the lease: a Done from take itself
	// cannot wait for the next run, which comes after take returns.
	taking atomic.Bool
}

// RunID is the run leased.
func (l *Lease) RunID() int64 { return l.id }

// Redelivered says the run was handed out before, to a runner whose lease
// lapsed (or that let it go).
func (l *Lease) Redelivered() bool { return l.redelivered }

// Renew extends the lease by the lease time from now.
func (l *Lease) Renew() error { return l.msg.InProgress() }

// Done takes the run off its line for good, and lets the next run of its
// lock out: when Done returns, that run has been handed to this process's
// take, so that it starts before any run queued after it that needs no
// lock.
func (l *Lease) Done(ctx context.Context) error {
	err := l.msg.DoubleAck(ctx)
	l.end()
	if err == nil && l.next != nil && !l.taking.Load() {
		select {
		case <-l.next:
		case <-l.quit:
		case <-ctx.Done():
		}
	}
	return err
}

// Release gives the run back to the head of its line, for any runner.
func (l *Lease) Release() error {
	defer l.end()
	return l.msg.Nak()
}

func (l *Lease) end() { l.once.Do(func() { close(l.over) }) }

// pollWait bounds one pull; a line is asked again at once after it.
const pollWait = 5 * time.Second

// Take hands the runs of zone to take as they reach the heads of their
// lines, until ctx ends. A run is taken only while room says there is
// room for it, so that it goes to a runner that starts it at once;
// roomed is signalled when room may have changed. The next run of a lock
// is not asked for before the last one's lease is over, and then taken
// at once, into the slot the last one freed.
func (e *Engine) Take(ctx context.Context, zone string, room func() bool, roomed <-chan struct{}, take func(*Lease)) error {
	if !ValidZone(zone) {
		return fmt.Errorf("bad zone %q", zone)
	}
	names := make(chan string, 64)
	sub, err := e.nc.Subscribe(announce(zone), func(m *nats.Msg) {
		select {
		case names <- string(m.Data):
		default: // the next listing finds it
		}
	})
	if err != nil {
		return fmt.Errorf("follow the lines of zone %s: %w", zone, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	anySubject, anyName := line(zone, "")
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		_, err := e.js.CreateOrUpdateConsumer(ctx, workStream.Name, e.lineConfig(anySubject, anyName, false))
		if err == nil {
			break
		}
		// The engine may be out of reach, or its disk full, for now.
		e.log.Warn("open the line of a zone; retrying", "zone", zone, "err", err)
		if !sleep(ctx, backoff) {
			return nil
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// Every line waits for room, so a signal on roomed is for all of them.
	changed := newSignal()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-roomed:
				changed.fire()
			}
		}
	}()
	taking := map[string]bool{}
	follow := func(name string) {
		if taking[name] || !ofZone(name, zone) {
			return
		}
		taking[name] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.takeFrom(ctx, name, name != anyName, room, changed, take)
		}()
	}
	follow(anyName)
	list := time.NewTicker(30 * time.Second)
	defer list.Stop()
	for {
		lister := e.work.ConsumerNames(ctx)
		for name := range lister.Name() {
			follow(name)
		}
		if err := lister.Err(); err != nil && ctx.Err() == nil {
			e.log.Warn("list the lines of the work queue", "err", err)
		}
		for again := false; !again; {
			select {
			case <-ctx.Done():
				return nil
			case name := <-names:
				follow(name)
			case <-list.C:
				again = true
			}
		}
	}
}

// signal is a broadcast: fire wakes everyone waiting.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *signal) fire() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

// takeFrom pulls runs from one line until ctx ends. A run is taken only
// while this runner has room for it, so that a runner with a free slot
// gets it rather than one that would keep it waiting: the line that
// needs no lock is asked only then; a lock's line is asked always (a run
// whose runner died must be marked interrupted, and its lock let go,
// whether or not anyone has room), and a run it hands out to a runner
// without room goes back, and the line waits for room before asking
// again. The next run of a lock is handed over at once (see pollOnce).
func (e *Engine) takeFrom(ctx context.Context, name string, locked bool, room func() bool, changed *signal, take func(*Lease)) {
	var cons jetstream.Consumer
	for backoff := 100 * time.Millisecond; cons == nil; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if cons, err = e.js.Consumer(ctx, workStream.Name, name); err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Warn("open a line of the work queue", "line", name, "err", err)
			if !sleep(ctx, backoff) {
				return
			}
		}
	}
	gave := false // gave a run back for want of room
	for backoff := 100 * time.Millisecond; ctx.Err() == nil; {
		for !locked || gave {
			w := changed.wait()
			if room() {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-w:
			}
		}
		var ok bool
		var err error
		ok, gave, err = e.pollOnce(ctx, cons, name, locked, room, take)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				return
			}
			e.log.Warn("take from the work queue", "line", name, "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		if !ok {
			return
		}
		backoff = 100 * time.Millisecond
	}
}

// pollOnce asks the line for one run, for at most pollWait, and hands it
// to take. It reports false once ctx has ended, and whether it gave the
// run back for want of room.
func (e *Engine) pollOnce(ctx context.Context, cons jetstream.Consumer, name string, locked bool, room func() bool, take func(*Lease)) (bool, bool, error) {
	pollCtx, cancel := context.WithTimeout(ctx, pollWait)
	defer cancel()
	batch, err := cons.Fetch(1, jetstream.FetchContext(pollCtx))
	if err != nil {
		return ctx.Err() == nil, false, err
	}
	l := e.lease1(ctx, batch, name, !locked)
	if l != nil && !room() && (!locked || !l.Redelivered()) {
		// No room (or it went while the pull waited): the run goes back
		// to the head of its line, for a runner with room. A lock's run
		// handed out again is kept: its runner may have died holding
		// the lock, and taking it lets the lock go.
		_ = l.Release()
		return ctx.Err() == nil, true, nil
	}
	// prev is the lock's last run, whose Done waits until the next run has
	// been through take: only then may its slot go to a run without a lock.
	var prev *Lease
	handed := func() {
		if prev != nil {
			close(prev.next)
			prev = nil
		}
	}
	defer handed()
	for l != nil {
		if ctx.Err() != nil {
			_ = l.Release()
			return false, false, nil
		}
		l.taking.Store(true)
		take(l)
		l.taking.Store(false)
		handed()
		if !locked {
			break
		}
		// The lock's next run cannot come out before this lease is over:
		// no use asking before. Then it is asked for at once.
		select {
		case <-l.over:
		case <-ctx.Done():
			return false, false, nil
		}
		prev, l = l, nil
		if next, err := cons.FetchNoWait(1); err == nil {
			l = e.lease1(ctx, next, name, !locked)
		}
	}
	if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return true, false, err // the caller backs off: a line just made may not answer yet
	}
	return ctx.Err() == nil, false, nil
}

// lease1 returns the lease on the first run in batch, nil if none.
func (e *Engine) lease1(ctx context.Context, batch jetstream.MessageBatch, name string, free bool) *Lease {
	for msg := range batch.Messages() {
		id, err := strconv.ParseInt(string(msg.Data()), 10, 64)
		if err != nil {
			e.log.Error("a message in the work queue names no run; dropped", "line", name, "data", string(msg.Data()))
			_ = msg.Term()
			continue
		}
		l := &Lease{id: id, msg: msg, over: make(chan struct{}), quit: ctx.Done()}
		if !free {
			l.next = make(chan struct{})
		}
		if md, err := msg.Metadata(); err == nil {
			l.redelivered = md.NumDelivered > 1
		}
		return l
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// WorkIsNew reports whether this process created the work queue: runs
// queued before it existed (by an older shiplog) are not in it yet.
func (e *Engine) WorkIsNew() bool { return e.workIsNew }

// LeaseTime is how long a run's lease lasts without renewal.
func (e *Engine) LeaseTime() time.Duration { return e.lease }
