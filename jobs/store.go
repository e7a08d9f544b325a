package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Store keeps run records durably in SQLite; with Records, the database
// is a projection of them.
type Store struct {
	db   *sql.DB
	recs Records // nil: the database alone

	mu       sync.Mutex
	revs     map[int64]uint64        // the revision this process last wrote of each live run
	watchers map[int64]chan struct{} // closed at the run's next change seen in the records
	next     uint64                  // the revision Follow starts from
	queued   map[int64]bool          // the runs the database has as queued
	line     chan struct{}           // closed at the next change to any run; nil until watched
}

const schema = `
CREATE TABLE IF NOT EXISTS runs (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	job              TEXT    NOT NULL,
	params           TEXT    NOT NULL,
	state            TEXT    NOT NULL,
	exit_code        INTEGER,
	error            TEXT    NOT NULL DEFAULT '',
	progress_percent INTEGER,
	progress_message TEXT    NOT NULL DEFAULT '',
	annotations      TEXT    NOT NULL DEFAULT '[]',
	triggered_by     TEXT    NOT NULL DEFAULT '',
	rerun_of         INTEGER NOT NULL DEFAULT 0,
	queued_at        INTEGER NOT NULL,
	started_at       INTEGER,
	finished_at      INTEGER,
	log_bytes        INTEGER NOT NULL DEFAULT 0,
	log_lines        INTEGER NOT NULL DEFAULT 0,
	pid              INTEGER NOT NULL DEFAULT 0,
	log_cut          INTEGER NOT NULL DEFAULT 0,
	rev              INTEGER NOT NULL DEFAULT 0,
	wait             TEXT    NOT NULL DEFAULT '',
	lock             TEXT    NOT NULL DEFAULT '',
	node             TEXT    NOT NULL DEFAULT '',
	groups           TEXT    NOT NULL DEFAULT '[]',
	gates            TEXT    NOT NULL DEFAULT '[]',
	environment      TEXT    NOT NULL DEFAULT '',
	version          TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_job_id ON runs(job, id);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
CREATE INDEX IF NOT EXISTS runs_triggered_by ON runs(triggered_by, id);
`

// maxConns bounds the database connections: SQLite in WAL mode reads in
// parallel and writes one at a time.
const maxConns = 8

// OpenStore opens (creating if needed) the database at path. With recs,
// ids come from recs, writes go there first, and the database is brought
// in step with it here: records it lacks are written in, and runs
// recorded before the engine held them are sent to it.
func OpenStore(ctx context.Context, path string, recs Records) (*Store, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// Connections are kept rather than opened per query (opening one parses
	// the schema): a burst of readers, such as every viewer of a run
	// fetching it as it ends, queues for a few instead of opening hundreds.
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create schema in %s: %w", path, err)
	}
	// Columns added since the first schema; a database that has them says
	// "duplicate column", which is fine.
	for _, col := range []string{"log_cut INTEGER NOT NULL DEFAULT 0", "rev INTEGER NOT NULL DEFAULT 0", "wait TEXT NOT NULL DEFAULT ''", "lock TEXT NOT NULL DEFAULT ''", "node TEXT NOT NULL DEFAULT ''", "groups TEXT NOT NULL DEFAULT '[]'", "gates TEXT NOT NULL DEFAULT '[]'", "environment TEXT NOT NULL DEFAULT ''", "version TEXT NOT NULL DEFAULT ''"} {
		if _, err := db.ExecContext(ctx, "ALTER TABLE runs ADD COLUMN "+col); err != nil && !strings.Contains(err.Error(), "duplicate column") {
			db.Close()
			return nil, fmt.Errorf("migrate %s: %w", path, err)
		}
	}
	// Indexes on columns a migration may just have added.
	if _, err := db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS runs_environment ON runs(environment, id)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	s := &Store{db: db, recs: recs, revs: map[int64]uint64{}, watchers: map[int64]chan struct{}{}, queued: map[int64]bool{}}
	if recs != nil {
		if err := s.sync(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT id FROM runs WHERE state = ?`, Queued)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("list queued runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			db.Close()
			return nil, fmt.Errorf("list queued runs: %w", err)
		}
		s.queued[id] = true
	}
	return s, rows.Err()
}

// sync brings the database in step with the records.
func (s *Store) sync(ctx context.Context) error {
	seen := map[int64]bool{}
	err := s.recs.Each(ctx, func(id int64, data []byte, rev uint64) error {
		seen[id] = true
		s.next = max(s.next, rev+1)
		var have uint64
		if err := s.db.QueryRowContext(ctx, `SELECT rev FROM runs WHERE id=?`, id).Scan(&have); err == nil && have == rev {
			return nil
		}
		run, err := decodeRecord(data)
		if err != nil {
			return fmt.Errorf("run %d: %w", id, err)
		}
		run.ID = id
		return s.save(ctx, run, rev)
	})
	if err != nil {
		return err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, rev FROM runs`)
	if err != nil {
		return fmt.Errorf("list runs: %w", err)
	}
	local := map[int64]uint64{}
	for rows.Next() {
		var (
			id  int64
			rev uint64
		)
		if err := rows.Scan(&id, &rev); err != nil {
			rows.Close()
			return fmt.Errorf("list runs: %w", err)
		}
		local[id] = rev
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list runs: %w", err)
	}
	var last int64
	for id, rev := range local {
		last = max(last, id)
		switch {
		case seen[id]:
		case rev != 0 && len(seen) > 0:
			// The records held it once and no longer do: pruned elsewhere.
			// (With no records at all, the engine is a new one: the
			// database's runs go to it, whatever their revision.)
			if _, err := s.db.ExecContext(ctx, `DELETE FROM runs WHERE id = ?`, id); err != nil {
				return fmt.Errorf("delete run %d: %w", id, err)
			}
		default:
			if err := s.moveToRecords(ctx, id); err != nil {
				return err
			}
		}
	}
	return s.recs.Raise(ctx, last)
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

const runColumns = `id, job, params, state, exit_code, error, progress_percent, progress_message,
	annotations, triggered_by, rerun_of, queued_at, started_at, finished_at, log_bytes, log_lines, pid, log_cut, lock, node, groups, gates, environment, version`

func ms(t time.Time) int64 { return t.UnixMilli() }

func nullMS(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

// moveToRecords sends run id, recorded before the engine held records,
// to them.
func (s *Store) moveToRecords(ctx context.Context, id int64) error {
	run, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	data, err := encodeRecord(run)
	if err != nil {
		return err
	}
	rev, err := s.recs.Put(ctx, id, data, 0)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE runs SET rev=? WHERE id=?`, rev, id); err != nil {
		return fmt.Errorf("update run %d: %w", id, err)
	}
	return nil
}

// Insert records a new run and sets its ID.
func (s *Store) Insert(ctx context.Context, r *Run) error {
	if s.recs == nil {
		params, err := json.Marshal(r.Params)
		if err != nil {
			return fmt.Errorf("encode params: %w", err)
		}
		res, err := s.db.ExecContext(ctx,
			`INSERT INTO runs (job, params, state, triggered_by, rerun_of, queued_at) VALUES (?, ?, ?, ?, ?, ?)`,
			r.Job, string(params), r.State, r.TriggeredBy, r.RerunOf, ms(r.QueuedAt))
		if err != nil {
			return fmt.Errorf("insert run: %w", err)
		}
		r.ID, err = res.LastInsertId()
		return err
	}
	id, err := s.recs.NextID(ctx)
	if err != nil {
		return err
	}
	r.ID = id
	return s.write(ctx, r, 0)
}

// Update writes every mutable field of r. With records, it fails if the
// record has changed since this process last wrote it: another writer
// (a replica that took the run over) has it now.
func (s *Store) Update(ctx context.Context, r *Run) error {
	if s.recs == nil {
		return s.save(ctx, r, 0)
	}
	s.mu.Lock()
	rev, ok := s.revs[r.ID]
	s.mu.Unlock()
	if !ok {
		if err := s.db.QueryRowContext(ctx, `SELECT rev FROM runs WHERE id=?`, r.ID).Scan(&rev); err != nil {
			return fmt.Errorf("update run %d: %w", r.ID, err)
		}
	}
	return s.write(ctx, r, rev)
}

// write sends r to the records, based on revision rev, then to the
// database.
func (s *Store) write(ctx context.Context, r *Run, rev uint64) error {
	data, err := encodeRecord(r)
	if err != nil {
		return err
	}
	rev, err = s.recs.Put(ctx, r.ID, data, rev)
	if err != nil {
		return err
	}
	// The revision is kept in memory too: a database write that fails
	// after the record's (a full disk) must not fence this process off
	// its own run.
	s.mu.Lock()
	if r.State.Finished() {
		delete(s.revs, r.ID)
	} else {
		s.revs[r.ID] = rev
	}
	s.mu.Unlock()
	return s.save(ctx, r, rev)
}

// save writes every field of r to the database, with the record's
// revision (0 without records).
func (s *Store) save(ctx context.Context, r *Run, rev uint64) error {
	params, err := json.Marshal(r.Params)
	if err != nil {
		return fmt.Errorf("encode params: %w", err)
	}
	ann, err := json.Marshal(r.Annotations)
	if err != nil {
		return fmt.Errorf("encode annotations: %w", err)
	}
	groups, gates := []byte("[]"), []byte("[]")
	if len(r.Groups) > 0 {
		if groups, err = json.Marshal(r.Groups); err != nil {
			return fmt.Errorf("encode groups: %w", err)
		}
	}
	if len(r.Gates) > 0 {
		if gates, err = json.Marshal(r.Gates); err != nil {
			return fmt.Errorf("encode gates: %w", err)
		}
	}
	var pct any
	msg := ""
	if r.Progress != nil {
		pct, msg = r.Progress.Percent, r.Progress.Message
	}
	var exit any
	if r.ExitCode != nil {
		exit = *r.ExitCode
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO runs (`+runColumns+`, rev)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET state=excluded.state, exit_code=excluded.exit_code, error=excluded.error,
		progress_percent=excluded.progress_percent, progress_message=excluded.progress_message,
		annotations=excluded.annotations, started_at=excluded.started_at, finished_at=excluded.finished_at,
		log_bytes=excluded.log_bytes, log_lines=excluded.log_lines, pid=excluded.pid, log_cut=excluded.log_cut,
		lock=excluded.lock, node=excluded.node, groups=excluded.groups, gates=excluded.gates,
		environment=excluded.environment, version=excluded.version, rev=excluded.rev
		WHERE excluded.rev >= runs.rev`,
		r.ID, r.Job, string(params), r.State, exit, r.Error, pct, msg, string(ann), r.TriggeredBy, r.RerunOf,
		ms(r.QueuedAt), nullMS(r.StartedAt), nullMS(r.FinishedAt), r.LogBytes, r.LogLines, r.PID, r.LogCut, r.Lock, r.Node, string(groups), string(gates), r.Environment, r.Version, rev)
	if err != nil {
		return fmt.Errorf("update run %d: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return nil // older than what the database has
	}
	s.mu.Lock()
	if r.State == Queued {
		s.queued[r.ID] = true
	} else {
		delete(s.queued, r.ID)
	}
	s.mu.Unlock()
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanRun(sc scanner) (*Run, error) {
	var (
		r                 Run
		params, ann, grp  string
		gates             string
		exit, pct         sql.NullInt64
		msg               string
		queued            int64
		started, finished sql.NullInt64
	)
	err := sc.Scan(&r.ID, &r.Job, &params, &r.State, &exit, &r.Error, &pct, &msg, &ann,
		&r.TriggeredBy, &r.RerunOf, &queued, &started, &finished, &r.LogBytes, &r.LogLines, &r.PID, &r.LogCut, &r.Lock, &r.Node, &grp, &gates, &r.Environment, &r.Version)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(params), &r.Params); err != nil {
		return nil, fmt.Errorf("decode params of run %d: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(ann), &r.Annotations); err != nil {
		return nil, fmt.Errorf("decode annotations of run %d: %w", r.ID, err)
	}
	if gates != "[]" {
		if err := json.Unmarshal([]byte(gates), &r.Gates); err != nil {
			return nil, fmt.Errorf("decode gates of run %d: %w", r.ID, err)
		}
	}
	if grp != "[]" {
		if err := json.Unmarshal([]byte(grp), &r.Groups); err != nil {
			return nil, fmt.Errorf("decode groups of run %d: %w", r.ID, err)
		}
	}
	if exit.Valid {
		v := int(exit.Int64)
		r.ExitCode = &v
	}
	if pct.Valid {
		r.Progress = &Progress{Percent: int(pct.Int64), Message: msg}
	}
	r.QueuedAt = time.UnixMilli(queued)
	if started.Valid {
		t := time.UnixMilli(started.Int64)
		r.StartedAt = &t
	}
	if finished.Valid {
		t := time.UnixMilli(finished.Int64)
		r.FinishedAt = &t
	}
	return &r, nil
}

// Fresh returns run id as its record is now, not as the database has it
// yet, and bases this process's next write of it on that revision.
func (s *Store) Fresh(ctx context.Context, id int64) (*Run, error) {
	if s.recs == nil {
		return s.Get(ctx, id)
	}
	run, rev, err := s.latest(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if run.State.Finished() {
		delete(s.revs, id)
	} else {
		s.revs[id] = rev
	}
	s.mu.Unlock()
	return run, nil
}

// Latest is Fresh for a reader: this process's writes stay based on the
// revision they were, so that a late writer is still refused.
func (s *Store) Latest(ctx context.Context, id int64) (*Run, error) {
	if s.recs == nil {
		return s.Get(ctx, id)
	}
	run, _, err := s.latest(ctx, id)
	return run, err
}

func (s *Store) latest(ctx context.Context, id int64) (*Run, uint64, error) {
	data, rev, err := s.recs.Get(ctx, id)
	var nf interface{ NotFound() bool }
	if errors.As(err, &nf) && nf.NotFound() {
		return nil, 0, fmt.Errorf("%w: #%d", ErrNotFound, id)
	}
	if err != nil {
		return nil, 0, err
	}
	run, err := decodeRecord(data)
	if err != nil {
		return nil, 0, err
	}
	run.ID = id
	return run, rev, nil
}

// Get returns the run with the given ID.
func (s *Store) Get(ctx context.Context, id int64) (*Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) && s.recs != nil {
		// Recorded through another replica a moment ago, maybe: Follow
		// has not brought it here yet.
		if data, _, err := s.recs.Get(ctx, id); err == nil {
			if r, err := decodeRecord(data); err == nil {
				r.ID = id
				return r, nil
			}
		}
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: #%d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("get run %d: %w", id, err)
	}
	return r, nil
}

// Filter selects runs for List.
type Filter struct {
	Job    string
	States []State
	By     string // who triggered, exactly
	// Environment: only runs that deploy there.
	Environment string
	Before      int64 // only runs with a smaller ID; 0 for no bound
	Limit       int
}

// Environments returns the environments runs have deployed to (or tried),
// in order of name.
func (s *Store) Environments(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT environment FROM runs WHERE environment != '' ORDER BY environment LIMIT 1000`)
	if err != nil {
		return nil, fmt.Errorf("list environments: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, fmt.Errorf("list environments: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// List returns runs matching f, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]*Run, error) {
	var (
		where []string
		args  []any
	)
	if f.Job != "" {
		where = append(where, "job = ?")
		args = append(args, f.Job)
	}
	if len(f.States) > 0 {
		where = append(where, "state IN (?"+strings.Repeat(",?", len(f.States)-1)+")")
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	if f.By != "" {
		where = append(where, "triggered_by = ?")
		args = append(args, f.By)
	}
	if f.Environment != "" {
		where = append(where, "environment = ?")
		args = append(args, f.Environment)
	}
	if f.Before > 0 {
		where = append(where, "id < ?")
		args = append(args, f.Before)
	}
	q := `SELECT ` + runColumns + ` FROM runs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var out []*Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Triggerers returns who triggered runs, most recent first, at most limit
// of them: the choices of a filter.
func (s *Store) Triggerers(ctx context.Context, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT triggered_by FROM runs WHERE triggered_by != ''
		GROUP BY triggered_by ORDER BY MAX(id) DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list triggerers: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var by string
		if err := rows.Scan(&by); err != nil {
			return nil, fmt.Errorf("list triggerers: %w", err)
		}
		out = append(out, by)
	}
	return out, rows.Err()
}

// Prune deletes the finished runs of job beyond the newest keep, returning
// their IDs so their logs can go too.
func (s *Store) Prune(ctx context.Context, job string, keep int) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM runs WHERE job = ? AND state NOT IN ('queued','running')
		ORDER BY id DESC LIMIT -1 OFFSET ?`, job, keep)
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", job, err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("prune %s: %w", job, err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("prune %s: %w", job, err)
	}
	for _, id := range ids {
		if s.recs != nil {
			if err := s.recs.Delete(ctx, id); err != nil {
				return nil, err
			}
		}
		if _, err := s.db.ExecContext(ctx, `DELETE FROM runs WHERE id = ?`, id); err != nil {
			return nil, fmt.Errorf("prune run %d: %w", id, err)
		}
	}
	return ids, nil
}

// CountByState returns how many runs are in each state.
func (s *Store) CountByState(ctx context.Context) (map[State]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM runs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count runs: %w", err)
	}
	defer rows.Close()
	out := map[State]int{}
	for rows.Next() {
		var st State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count runs: %w", err)
		}
		out[st] = n
	}
	return out, rows.Err()
}
