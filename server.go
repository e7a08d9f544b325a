package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/shiplog/shiplog/access"
	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/engine"
	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/streams"
)

// server holds what the handlers need; it has no logic of its own.
type server struct {
	runner   *jobs.Runner
	hub      *streams.Hub
	log      *slog.Logger
	policy   *access.Policy
	sessions *access.Sessions

	limits         Limits
	streams        slots
	searches       slots
	triggers       triggerLimiter
	activeStreams  atomic.Int64
	activeSearches atomic.Int64
	searchBudget   time.Duration  // searchBudget if zero (tests shorten it)
	streamsWG      sync.WaitGroup // event streams: they outlive net/http's tracking once they take their connection over
	linesStreamed  atomic.Int64
	durations      *durations
	engine         *engine.Engine
	shipper        *engine.Shipper // sends this process's run logs to the engine
	copies         *logCopies      // copies of the logs of runs not run here
	node           string          // names this process in the records of the runs it runs

	hosts          *hostPolicy  // nil: any Host (tests that build a server by hand)
	publicOrigin   string       // scheme://host of --public-url, if given
	trustedProxies []*net.IPNet // X-Forwarded-For and -Proto are read only from these
}

func newServer(runner *jobs.Runner, hub *streams.Hub, policy *access.Policy, sessions *access.Sessions, log *slog.Logger) *server {
	return &server{runner: runner, hub: hub, policy: policy, sessions: sessions, log: log, durations: newDurations()}
}

// routes is the one route table.
func (s *server) routes() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = ipExtractor(s.trustedProxies)
	e.Use(middleware.Recover())
	e.Use(securityHeaders)
	e.Use(s.checkHost)
	e.Use(s.authenticate)

	get(e, "/healthz", s.getHealth)
	get(e, "/metrics", s.getMetrics)

	// Per route, not on the group: group middleware makes echo answer 404
	// where 405 is right.
	limit := middleware.BodyLimit("64K")
	json := []echo.MiddlewareFunc{limit, requireJSON}
	api := e.Group("/api")
	get(api, "/jobs", s.listJobs)
	api.POST("/jobs/:job/runs", s.createRun, json...)
	get(api, "/runs", s.listRuns)
	get(api, "/environments", s.listEnvironments)
	get(api, "/runs/:id", s.getRun)
	api.POST("/runs/:id/cancel", s.cancelRun, json...)
	api.POST("/runs/:id/rerun", s.rerunRun, json...)
	api.POST("/runs/:id/gate", s.answerGate, json...)
	get(api, "/runs/:id/deliveries", s.listDeliveries)
	get(api, "/runs/:id/diff", s.getDiff)
	get(api, "/runs/:id/events", s.streamRunEvents)
	get(api, "/runs/:id/log", s.getRunLog)
	get(api, "/runs/:id/search", s.searchRunLog)
	get(api, "/runs/:id/times", s.getLineTimes)

	s.pageRoutes(e)
	return e
}

// router is what echo.Echo and echo.Group share for adding routes.
type router interface {
	Match(methods []string, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) []*echo.Route
}

// get adds a GET route that answers HEAD too, as HTTP says every GET
// resource should; net/http drops the body of a HEAD answer.
func get(r router, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
	r.Match([]string{http.MethodGet, http.MethodHead}, path, h, m...)
}

// apiError is an error with the status and field the client is told.
type apiError struct {
	status int
	msg    string
	field  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(field, format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, field: field, msg: fmt.Sprintf(format, args...)}
}

// errorStatus maps an error to what the client is told, in one place.
func errorStatus(err error) (status int, msg, field string) {
	var ae *apiError
	var pe *jobs.ParamError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.msg, ae.field
	case errors.As(err, &pe):
		return http.StatusBadRequest, pe.Error(), pe.Field
	case errors.Is(err, jobs.ErrUnknownJob), errors.Is(err, jobs.ErrNotFound):
		return http.StatusNotFound, err.Error(), ""
	case errors.Is(err, jobs.ErrFinished), errors.Is(err, jobs.ErrNoGate):
		return http.StatusConflict, err.Error(), ""
	case errors.Is(err, jobs.ErrFourEyes):
		return http.StatusForbidden, err.Error(), ""
	case errors.Is(err, jobs.ErrNoSpace):
		return http.StatusInsufficientStorage, err.Error(), ""
	case errors.Is(err, jobs.ErrShuttingDown), errors.Is(err, jobs.ErrNoRunner), errors.Is(err, streams.ErrClosed),
		errors.Is(err, engine.ErrUnreachable):
		return http.StatusServiceUnavailable, err.Error(), ""
	case errors.As(err, &he):
		msg := strings.ToLower(http.StatusText(he.Code))
		if m, ok := he.Message.(string); ok && he.Code != http.StatusNotFound {
			msg = strings.ToLower(m)
		}
		return he.Code, msg, ""
	default:
		return http.StatusInternalServerError, "internal error", ""
	}
}

func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg, field := errorStatus(err)
	if status >= 500 {
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	if status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "5")
	}
	if !strings.HasPrefix(c.Request().URL.Path, "/api/") && wantsHTML(c.Request()) {
		_ = s.renderErrorPage(c, status, msg)
		return
	}
	body := api.ErrorBody{Error: msg, Field: field}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, body)
}

func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// runID parses the :id path parameter: a positive integer.
func runID(c echo.Context) (int64, error) {
	raw := c.Param("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest("id", "invalid run id %q: want a positive integer", truncate(raw, 40))
	}
	return id, nil
}

// requestedRun returns the run the :id path parameter names.
func (s *server) requestedRun(c echo.Context) (*jobs.Run, error) {
	id, err := runID(c)
	if err != nil {
		return nil, err
	}
	return s.runner.Get(c.Request().Context(), id)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (s *server) getHealth(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// positiveParam parses an optional query parameter that must be a positive
// integer (what says of what: "line number", "run id"); def if it is absent.
func positiveParam(c echo.Context, name, what string, def int64) (int64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, badRequest(name, "%s must be a positive %s", name, what)
	}
	return n, nil
}

// boolParam parses an optional boolean query parameter: 1, true, 0, false.
func boolParam(c echo.Context, name string) (bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest(name, "%s must be true or false, got %q", name, truncate(v, 40))
	}
	return b, nil
}
