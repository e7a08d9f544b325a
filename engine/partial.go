package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shiplog/shiplog/logfile"
)

// A run's unfinished last line (a prompt, a progress bar redrawn with \r)
// travels to the nodes that copy its log over core NATS, not the LOGS
// stream: only the latest one matters, the log gets the line once it is
// whole, and a node that misses one is sent the next. The message says
// which whole lines it follows (the byte offset), so a copy shows it only
// once it has them, and never after the lines that completed it.
const (
	partialPrefix = "shiplog.partial."
	offsetHeader  = "Shiplog-Offset"
	// partialEvery spaces a run's partial lines on the wire: the last
	// one in a burst goes out at the end of its interval.
	partialEvery = 50 * time.Millisecond
	// askTimeout bounds the question of a copy that starts while a line
	// is unfinished.
	askTimeout = 2 * time.Second
)

func partialSubject(id int64) string { return partialPrefix + strconv.FormatInt(id, 10) }

// PartialSender publishes the unfinished last lines of the runs this node
// runs, at most one per run every partialEvery, and answers a copy that
// asks for the current one.
type PartialSender struct {
	e   *Engine
	sub *nats.Subscription

	mu   sync.Mutex
	runs map[int64]*unfinished
}

// unfinished is a run's latest partial line and its pacing.
type unfinished struct {
	at    int64
	text  []byte
	last  time.Time   // when one last went out
	timer *time.Timer // a send waiting for its interval; nil if none
}

// Partials returns the node's sender of partial lines. Close it with
// Close.
func (e *Engine) Partials() (*PartialSender, error) {
	p := &PartialSender{e: e, runs: map[int64]*unfinished{}}
	sub, err := e.nc.Subscribe(partialPrefix+"*.now", p.answer)
	if err != nil {
		return nil, fmt.Errorf("engine: partial lines: %w", err)
	}
	p.sub = sub
	return p, nil
}

// Close stops answering and drops what waits to be sent.
func (p *PartialSender) Close() {
	_ = p.sub.Unsubscribe()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, u := range p.runs {
		if u.timer != nil {
			u.timer.Stop()
		}
		delete(p.runs, id)
	}
}

// Tell sets run id's unfinished line: text (masked; copied) follows the
// whole lines that end at offset at; empty once the line is whole. It
// never blocks on the engine.
func (p *PartialSender) Tell(id, at int64, text []byte) {
	text = logfile.PartialTail(text)
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.runs[id]
	if u == nil {
		if len(text) == 0 {
			return // nothing shown, nothing to clear
		}
		u = &unfinished{}
		p.runs[id] = u
	}
	u.at, u.text = at, append(u.text[:0], text...)
	if u.timer != nil {
		return // the waiting send takes the latest
	}
	if wait := partialEvery - time.Since(u.last); wait > 0 {
		u.timer = time.AfterFunc(wait, func() { p.flush(id) })
		return
	}
	p.send(id, u)
}

func (p *PartialSender) flush(id int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u := p.runs[id]; u != nil {
		u.timer = nil
		p.send(id, u)
	}
}

// send publishes u; p.mu is held. An empty line, once sent, ends the entry.
func (p *PartialSender) send(id int64, u *unfinished) {
	u.last = time.Now()
	_ = p.e.nc.PublishMsg(partialMsg(partialSubject(id), u.at, u.text)) // best effort: the log gets the line anyway
	if len(u.text) == 0 {
		delete(p.runs, id)
	}
}

// answer replies to a copy asking for a run's current unfinished line;
// only the node that runs it has one, the others stay silent.
func (p *PartialSender) answer(m *nats.Msg) {
	id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(m.Subject, partialPrefix), ".now"), 10, 64)
	if err != nil {
		return
	}
	p.mu.Lock()
	u := p.runs[id]
	var reply *nats.Msg
	if u != nil && len(u.text) > 0 {
		reply = partialMsg(m.Reply, u.at, u.text)
	}
	p.mu.Unlock()
	if reply != nil {
		_ = p.e.nc.PublishMsg(reply)
	}
}

func partialMsg(subject string, at int64, text []byte) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Header.Set(offsetHeader, strconv.FormatInt(at, 10))
	msg.Data = text
	return msg
}

// FollowPartials calls f with run id's unfinished line as its runner tells
// it, the current one first if there is one, until stop is called. f runs
// on the connection's goroutine: it must not block.
func (e *Engine) FollowPartials(ctx context.Context, id int64, f func(at int64, text []byte)) (stop func(), err error) {
	handle := func(m *nats.Msg) {
		at, err := strconv.ParseInt(m.Header.Get(offsetHeader), 10, 64)
		if err != nil || at < 0 || len(m.Data) > logfile.MaxPartialShown {
			return // not from a shiplog runner
		}
		f(at, m.Data)
	}
	var heard atomic.Bool // a line told since: newer than any answer
	sub, err := e.nc.Subscribe(partialSubject(id), func(m *nats.Msg) { heard.Store(true); handle(m) })
	if err != nil {
		return nil, fmt.Errorf("engine: follow partial lines: %w", err)
	}
	// The line shown now, if any: asked once subscribed, so that nothing
	// told meanwhile is missed (a stale answer is dropped by its offset).
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	go func() {
		defer cancel()
		m, err := e.nc.RequestWithContext(ctx, partialSubject(id)+".now", nil)
		if err == nil && !heard.Load() {
			handle(m)
		} else if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, context.Canceled) {
			e.log.Debug("ask for a partial line", "run_id", id, "err", err)
		}
	}()
	return func() { cancel(); _ = sub.Unsubscribe() }, nil
}
