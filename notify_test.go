package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/notify"
)

// receiver is a webhook endpoint on loopback that keeps what it was sent.
type receiver struct {
	*httptest.Server
	mu    sync.Mutex
	got   []received
	calls int
	got1  chan struct{} // a delivery was taken (2xx)
}

type received struct {
	event, signature string
	body             []byte
}

// newReceiver answers each call with answer(n), n counting from 1.
func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	rc := &receiver{got1: make(chan struct{}, 100)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.calls++
		n := rc.calls
		rc.got = append(rc.got, received{r.Header.Get("Shiplog-Event"), r.Header.Get("Shiplog-Signature"), body})
		rc.mu.Unlock()
		answer(n, w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// verify checks a Shiplog-Signature as a receiver would, written here
// from the header's description rather than with notify.Sign.
func verify(secret, header string, body []byte, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("no timestamp in %q", header)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s too far from now", ts)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%s.%s", ts, body)
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return fmt.Errorf("signature %s, want %s", sig, want)
	}
	return nil
}

// Webhooks: a signed JSON notification of each outcome a hook wants, and
// of a gate; a Slack-compatible one; a receiver that fails twice gets a
// third try after backoff; one that hangs times out and is retried, and
// holds up neither runs nor other receivers; every attempt is in the
// run's delivery log, without the hook's secret path.
func TestWebhooks(t *testing.T) {
	t.Setenv("HOOK_SECRET", "whsec-test-123")
	ok := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	flaky := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			http.Error(w, "busy", http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	hang := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	slack := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	cfg := fmt.Sprintf(`
notify:
  - {url: %q, secret_env: HOOK_SECRET}
  - {url: %q, events: [failed]}
  - {url: %q, events: [failed]}
jobs:
  fails:
    run: echo "broken"; exit 2
  passes:
    notify:
      - {url: %q, format: slack, events: [succeeded, waiting]}
    run: |
      shiplog gate "Ship <it> & go?" --timeout 1m
      echo "ok"
`, ok.URL, flaky.URL, hang.URL, slack.URL+"/services/T0/B0/s3cretpath")
	s := startServer(t, cfg, func(c *Config) {
		c.PublicURL = "https://shiplog.example.com"
		c.Notify = notify.Options{Timeout: 300 * time.Millisecond, Backoff: 20 * time.Millisecond, Tries: 3}
	})

	failed := s.trigger("fails", nil)
	s.waitRun(failed.ID, isFinished)
	passes := s.trigger("passes", nil)
	s.waitRun(passes.ID, func(r *api.Run) bool { return r.State == api.Waiting })
	if code, _, body := s.do("POST", fmt.Sprintf("/api/runs/%d/gate", passes.ID), `{"decision":"approve"}`, "Content-Type", "application/json"); code != 200 {
		t.Fatalf("approve: %d %s", code, body)
	}
	s.waitRun(passes.ID, isFinished)

	// The delivery log fills in the background: wait for its final tries.
	var logs map[int64][]api.Delivery
	waitFor(t, "every notification's last try", func() bool {
		logs = map[int64][]api.Delivery{}
		finals := 0
		for _, id := range []int64{failed.ID, passes.ID} {
			_, _, body := s.do("GET", fmt.Sprintf("/api/runs/%d/deliveries", id), "")
			var ds []api.Delivery
			if json.Unmarshal(body, &ds) != nil {
				return false
			}
			logs[id] = ds
			for _, d := range ds {
				if d.Final {
					finals++
				}
			}
		}
		// failed: ok, flaky, hang; passes: ok (waiting? no: json hook wants all) ×2, slack ×2
		return finals == 7
	}, 20*time.Second)

	// The signed JSON hook got every event, each signature checking out.
	ok.mu.Lock()
	var events []string
	for _, g := range ok.got {
		events = append(events, g.event)
		if err := verify("whsec-test-123", g.signature, g.body, time.Now()); err != nil {
			t.Errorf("%s: %v", g.event, err)
		}
		var b struct {
			Event string     `json:"event"`
			Run   notify.Run `json:"run"`
		}
		if err := json.Unmarshal(g.body, &b); err != nil || b.Event != g.event || !strings.HasPrefix(b.Run.URL, "https://shiplog.example.com/runs/") {
			t.Errorf("body %s (%v)", g.body, err)
		}
	}
	ok.mu.Unlock()
	if strings.Join(events, ",") != "failed,waiting,succeeded" {
		t.Errorf("the JSON hook got %v", events)
	}
	// The flaky one: 502, 502, 200; the hanging one: timed out three times.
	var tries []string
	for _, d := range logs[failed.ID] {
		tries = append(tries, fmt.Sprintf("%s#%d:%d:%t", strings.TrimPrefix(d.Target, "http://"), d.Try, d.Status, d.Final))
	}
	flakyHost := strings.TrimPrefix(flaky.URL, "http://") + "/…"
	for _, want := range []string{flakyHost + "#1:502:false", flakyHost + "#2:502:false", flakyHost + "#3:200:true"} {
		if !strings.Contains(strings.Join(tries, " "), want) {
			t.Errorf("delivery log %v lacks %s", tries, want)
		}
	}
	hangTries := 0
	for _, d := range logs[failed.ID] {
		if strings.Contains(d.Target, strings.TrimPrefix(hang.URL, "http://")) {
			hangTries++
			if d.Status != 0 || d.Error == "" {
				t.Errorf("hanging receiver: %+v", d)
			}
		}
	}
	if hangTries != 3 {
		t.Errorf("hanging receiver tried %d times, want 3", hangTries)
	}
	// Slack: a text line, escaped; its secret path never in the log.
	slack.mu.Lock()
	if len(slack.got) != 2 || !strings.Contains(string(slack.got[0].body), `waits for approval: Ship \u0026lt;it\u0026gt; \u0026amp; go?`) {
		t.Errorf("slack got %q", slack.got)
	}
	slack.mu.Unlock()
	for _, ds := range logs {
		for _, d := range ds {
			if strings.Contains(d.Target, "s3cretpath") || strings.Contains(d.Error, "s3cretpath") {
				t.Errorf("a hook's secret path in the delivery log: %+v", d)
			}
		}
	}
	// The run page lists the attempts.
	if code, _, page := s.do("GET", fmt.Sprintf("/runs/%d", failed.ID), ""); code != 200 || !strings.Contains(string(page), `data-testid="deliveries"`) || !strings.Contains(string(page), "502") {
		t.Errorf("run page without its deliveries: %d", code)
	}
}
