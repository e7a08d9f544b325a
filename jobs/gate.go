package jobs

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shiplog/shiplog/logfile"
)

// A gate stops a run's script until a person answers: the script runs
// `shiplog gate "Run migrations on production?" --timeout 30m`, which asks
// the runner over a socket of the run's own and blocks; the run shows the
// question (waiting) on every replica, with Approve and Reject for those
// who may answer; the script learns the answer as the command's exit code.
// The socket takes only the run's gate token, handed to the job in its
// environment and masked in its log like a secret.

// Environment of a job's shell for `shiplog gate`.
const (
	GateAddrEnv  = "SHIPLOG_GATE"       // the runner's socket for this run
	GateTokenEnv = "SHIPLOG_GATE_TOKEN" // the run's gate token
)

// Decision is how a gate ended.
type Decision string

// Decisions. A timeout counts as a rejection; a run that ends while it
// waits (canceled, timed out, interrupted) ends its gate.
const (
	Approved     Decision = "approved"
	Rejected     Decision = "rejected"
	GateTimedOut Decision = "timed_out"
	GateEnded    Decision = "ended"
)

// Gate is a question a run asked, and its answer once given.
type Gate struct {
	ID       int       `json:"id"` // 1 for the run's first
	Question string    `json:"question"`
	AskedAt  time.Time `json:"asked_at"`
	Deadline time.Time `json:"deadline"`
	// Line is how many log lines came before it: where it stands.
	Line int64 `json:"line"`
	// Who may answer, as the job said when it was asked: these names, or
	// (none) whoever may run the job; with FourEyes, not who triggered.
	Approvers []string   `json:"approvers,omitempty"`
	FourEyes  bool       `json:"four_eyes,omitempty"`
	Decision  Decision   `json:"decision,omitempty"` // "" while open
	By        string     `json:"by,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
}

// Limits of gates.
const (
	maxGates         = 20
	maxQuestionBytes = 500
	maxReasonBytes   = 500
	// MaxGateTimeout bounds how long a gate may wait; DefaultGateTimeout
	// is the wait when the script does not say.
	MaxGateTimeout     = 7 * 24 * time.Hour
	DefaultGateTimeout = 30 * time.Minute
	maxGateRequest     = 8 << 10
)

// Errors of gates.
var (
	ErrNoGate   = errors.New("no gate is open")
	ErrFourEyes = errors.New("four_eyes: the person who triggered the run may not answer its gate")
)

// OpenGate returns the gate run r waits at, or nil.
func (r *Run) OpenGate() *Gate {
	if r.State != Running || len(r.Gates) == 0 {
		return nil
	}
	if g := &r.Gates[len(r.Gates)-1]; g.Decision == "" {
		return g
	}
	return nil
}

// endGates ends the gates of a run that ends while waiting.
func endGates(r *Run, now time.Time) {
	for i := range r.Gates {
		if r.Gates[i].Decision == "" {
			r.Gates[i].Decision, r.Gates[i].DecidedAt, r.Gates[i].By = GateEnded, &now, "shiplog"
			r.Gates[i].Reason = "the run ended: " + string(r.State)
		}
	}
}

// gateRequest is what `shiplog gate` sends; gateAnswer what it gets back:
// first the gate it opened (ID, or Error), then the decision.
type gateRequest struct {
	Token    string        `json:"token"`
	Question string        `json:"question"`
	Timeout  time.Duration `json:"timeout"`
}

type gateAnswer struct {
	ID       int       `json:"id,omitempty"`
	Deadline time.Time `json:"deadline,omitzero"`
	Decision Decision  `json:"decision,omitempty"`
	By       string    `json:"by,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// gateServer is a run's gate socket: an abstract Unix socket (no file,
// no path to clean up), guarded by the token.
type gateServer struct {
	ln    net.Listener
	addr  string
	token string
}

func newGateServer() (*gateServer, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	addr := "@shiplog-gate-" + hex.EncodeToString(b[:8])
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "unix", addr)
	if err != nil {
		return nil, fmt.Errorf("gate socket: %w", err)
	}
	var tok [24]byte
	if _, err := rand.Read(tok[:]); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return &gateServer{ln: ln, addr: addr, token: hex.EncodeToString(tok[:])}, nil
}

func (g *gateServer) env() []string {
	return []string{GateAddrEnv + "=" + g.addr, GateTokenEnv + "=" + g.token}
}

// serve answers `shiplog gate` for run t until the listener closes.
func (r *Runner) serveGates(t *task, g *gateServer) {
	for {
		conn, err := g.ln.Accept()
		if err != nil {
			return
		}
		go r.gateConn(t, g, conn)
	}
}

func (r *Runner) gateConn(t *task, g *gateServer, conn net.Conn) {
	defer conn.Close()
	enc := json.NewEncoder(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req gateRequest
	if err := json.NewDecoder(io.LimitReader(conn, maxGateRequest)).Decode(&req); err != nil {
		_ = enc.Encode(gateAnswer{Error: "a gate request is JSON: {token, question, timeout}"})
		return
	}
	if subtle.ConstantTimeCompare([]byte(req.Token), []byte(g.token)) != 1 {
		_ = enc.Encode(gateAnswer{Error: "wrong gate token"})
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	gate, decided, err := r.askGate(t, req.Question, req.Timeout)
	if err != nil {
		_ = enc.Encode(gateAnswer{Error: err.Error()})
		return
	}
	if enc.Encode(gateAnswer{ID: gate.ID, Deadline: gate.Deadline}) != nil {
		return
	}
	// The script may go away (killed): the gate then waits on until it is
	// answered, times out or the run ends.
	d := <-decided
	_ = enc.Encode(gateAnswer{ID: gate.ID, Decision: d.Decision, By: d.By, Reason: d.Reason})
}

// askGate opens a gate on running run t. The channel yields its end.
func (r *Runner) askGate(t *task, question string, timeout time.Duration) (Gate, <-chan Gate, error) {
	switch {
	case question == "":
		return Gate{}, nil, errors.New("a gate needs a question")
	case timeout <= 0:
		timeout = DefaultGateTimeout
	case timeout > MaxGateTimeout:
		return Gate{}, nil, fmt.Errorf("a gate waits %s at most", MaxGateTimeout)
	}
	// What the job printed before asking goes before the gate.
	r.mu.Lock()
	out, lw := t.out, t.lw
	r.mu.Unlock()
	drained(out)
	var lines int64
	if lw != nil {
		lines = lw.LinesNow()
	}
	// The gate is durable before anyone sees it: a server killed while a
	// reader saw the run waiting still has the gate when it starts again.
	var (
		g       Gate
		decided = make(chan Gate, 1)
	)
	ask := func(run *Run) {
		if g.ID == 0 {
			now := recordTime()
			g = Gate{
				ID: len(run.Gates) + 1, Question: clip(question, maxQuestionBytes), AskedAt: now, Deadline: now.Add(timeout), Line: lines,
				Approvers: t.job.Approvers, FourEyes: t.job.FourEyes,
			}
			if t.lw != nil {
				g.Question = t.lw.mask(g.Question) // a secret in the question stays in the job
			}
		}
		run.Gates = append(run.Gates, g)
	}
	var snap *Run
	err := r.persistFirst(t, func() error { return canAsk(t) }, ask, func() {
		t.gateDecided = decided
		id, gid := t.run.ID, g.ID
		t.gateTimer = time.AfterFunc(timeout, func() {
			_ = r.decideHere(id, gid, GateTimedOut, "shiplog", fmt.Sprintf("no answer within %s", timeout))
		})
		snap = t.run.clone()
	})
	if err != nil {
		return Gate{}, nil, err
	}
	if r.opts.OnGate != nil {
		r.observeGate(snap)
	}
	if t.lw != nil {
		t.lw.Interject(logfile.Note(fmt.Sprintf("gate %d: %s (waiting until %s)", g.ID, g.Question, g.Deadline.UTC().Format(time.RFC3339))))
	}
	return g, decided, nil
}

// canAsk says why run t cannot open a gate now, if it cannot; r.mu is held.
func canAsk(t *task) error {
	switch {
	case t.run.State != Running || t.ended != "":
		return fmt.Errorf("%w: the run is ending", ErrFinished)
	case t.run.OpenGate() != nil:
		return errors.New("a gate is open already: one at a time")
	case len(t.run.Gates) >= maxGates:
		return fmt.Errorf("a run asks %d gates at most", maxGates)
	}
	return nil
}

// observeGate tells OnGate of run in the background: it never holds up
// the gate.
func (r *Runner) observeGate(run *Run) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.opts.OnGate(run)
	}()
}

// Decide answers run id's open gate gate (0: whichever is open) on behalf
// of by, wherever the run runs. The caller has checked that by may answer
// for the job; four_eyes is checked here, against who triggered the run.
func (r *Runner) Decide(ctx context.Context, id int64, gate int, d Decision, by, reason string) error {
	if d != Approved && d != Rejected {
		return fmt.Errorf("%w: a decision is approved or rejected", ErrInvalidParam)
	}
	run, err := r.Get(ctx, id)
	if err != nil {
		return err
	}
	if g := run.OpenGate(); g != nil && g.FourEyes && by == run.TriggeredBy {
		return ErrFourEyes
	}
	r.mu.Lock()
	_, here := r.active[id]
	r.mu.Unlock()
	if !here {
		return r.decideThere(ctx, run, gateDecision{Gate: gate, Decision: d, By: by, Reason: reason})
	}
	return r.decideHere(id, gate, d, by, reason) //nolint:contextcheck // the answer is stored even if its request goes away
}

// decideHere ends gate gate (0: the open one) of run id, which runs here.
func (r *Runner) decideHere(id int64, gate int, d Decision, by, reason string) error {
	r.mu.Lock()
	t, ok := r.active[id]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("%w: #%d does not run here", ErrNotFound, id)
	}
	g := t.run.OpenGate()
	if g == nil || t.ended != "" || (gate != 0 && g.ID != gate) {
		r.mu.Unlock()
		return fmt.Errorf("%w: #%d waits at no gate %s", ErrNoGate, id, gateName(gate))
	}
	now := recordTime()
	g.Decision, g.By, g.Reason, g.DecidedAt = d, clip(by, maxTitleBytes), clip(reason, maxReasonBytes), &now
	ended := *g
	if t.gateTimer != nil {
		t.gateTimer.Stop()
	}
	decided := t.gateDecided
	t.gateDecided, t.gateTimer = nil, nil
	r.notify(t)
	snap := t.run.clone()
	lw := t.lw
	r.mu.Unlock()
	r.persist(t, snap)
	note := fmt.Sprintf("gate %d %s by %s at %s", ended.ID, ended.Decision, ended.By, now.UTC().Format(time.RFC3339))
	if ended.Reason != "" {
		note += ": " + ended.Reason
	}
	if lw != nil {
		lw.Interject(logfile.Note(note))
	}
	if decided != nil {
		decided <- ended
	}
	return nil
}

// drained waits, a moment at most, until the runner has read what the job
// wrote to out (its pipe or terminal) so far.
func drained(out *os.File) {
	if out == nil {
		return
	}
	rc, err := out.SyscallConn()
	if err != nil {
		return
	}
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
		n := 0
		if rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }) != nil || err != nil || n == 0 {
			return
		}
	}
}

func gateName(id int) string {
	if id == 0 {
		return ""
	}
	return fmt.Sprint(id)
}
