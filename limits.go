package main

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/shiplog/shiplog/access"
)

// Limits bound what one client, and everyone together, may hold or ask
// for. Zero means no limit.
type Limits struct {
	Streams           int // open event streams in total
	StreamsPerClient  int
	TriggersPerMinute int // runs a client may start (burst the same)
}

// clientKey names a client: its token, or its address when running open.
func clientKey(c echo.Context) string {
	if p := principal(c); p != nil && p != access.Anonymous {
		return "token:" + p.Name
	}
	return "ip:" + c.RealIP()
}

func tooMany(c echo.Context, after time.Duration, msg string) error {
	c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(after.Seconds()))))
	return &apiError{status: http.StatusTooManyRequests, msg: msg}
}

// slots counts what clients hold open (streams, searches), in total and
// per client.
type slots struct {
	mu        sync.Mutex
	total     int
	perClient map[string]int
}

// slotCaps are the caps of a kind of slot and what a client past one is
// told.
type slotCaps struct {
	total, perClient int           // 0: no cap
	retry            time.Duration // the Retry-After given
	totalMsg         string        // the server is full
	clientMsg        string        // this client is
}

// take holds a slot for client unless a cap is reached.
func (sl *slots) take(c echo.Context, caps slotCaps) (release func(), err error) {
	key := clientKey(c)
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if caps.total > 0 && sl.total >= caps.total {
		return nil, tooMany(c, caps.retry, caps.totalMsg)
	}
	if caps.perClient > 0 && sl.perClient[key] >= caps.perClient {
		return nil, tooMany(c, caps.retry, caps.clientMsg)
	}
	if sl.perClient == nil {
		sl.perClient = map[string]int{}
	}
	sl.total++
	sl.perClient[key]++
	return func() {
		sl.mu.Lock()
		defer sl.mu.Unlock()
		sl.total--
		if sl.perClient[key]--; sl.perClient[key] <= 0 {
			delete(sl.perClient, key)
		}
	}, nil
}

// acquireStream takes a stream slot for the client, or says why not.
func (s *server) acquireStream(c echo.Context) (release func(), err error) {
	return s.streams.take(c, slotCaps{total: s.limits.Streams, perClient: s.limits.StreamsPerClient, retry: 5 * time.Second,
		totalMsg:  "too many open streams on this server; try again shortly",
		clientMsg: "too many open streams from you; close some first"})
}

// Searches read whole logs and may run regular expressions: a few at a
// time in all (the machine's cores), fewer per client.
var searchCaps = slotCaps{total: 4, perClient: 2, retry: 2 * time.Second,
	totalMsg:  "too many searches running; try again shortly",
	clientMsg: "you have searches running; wait for them to finish"}

// acquireSearch takes a search slot for the client, or says why not.
func (s *server) acquireSearch(c echo.Context) (release func(), err error) {
	return s.searches.take(c, searchCaps)
}

// triggerLimiter holds a token bucket per client.
type triggerLimiter struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// maxBuckets bounds the limiter's memory; past it, buckets start afresh.
const maxBuckets = 10000

// allowTrigger spends one of the client's triggers.
func (s *server) allowTrigger(c echo.Context) error {
	per := s.limits.TriggersPerMinute
	if per <= 0 {
		return nil
	}
	key := clientKey(c)
	t := &s.triggers
	t.mu.Lock()
	if t.buckets == nil || len(t.buckets) > maxBuckets {
		t.buckets = map[string]*rate.Limiter{}
	}
	b, ok := t.buckets[key]
	if !ok {
		b = rate.NewLimiter(rate.Limit(float64(per)/60), per)
		t.buckets[key] = b
	}
	t.mu.Unlock()
	r := b.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return tooMany(c, d, "too many runs started; slow down")
	}
	return nil
}
