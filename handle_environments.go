package main

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shiplog/shiplog/api"
	"github.com/shiplog/shiplog/jobs"
	"github.com/shiplog/shiplog/views"
)

// environmentHistory is how many runs an environment lists.
const environmentHistory = 10

// environment is what is deployed to one environment and what is on its
// way there.
type environment struct {
	name      string
	current   *jobs.Run   // the last successful deploy; nil if none
	deploying []*jobs.Run // queued or running, oldest first
	history   []*jobs.Run // the latest runs, newest first
}

// environments reads every environment's state from the runs.
func (s *server) environments(ctx context.Context) ([]environment, error) {
	names, err := s.runner.Environments(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]environment, 0, len(names))
	for _, name := range names {
		e := environment{name: name}
		last, err := s.runner.List(ctx, jobs.Filter{Environment: name, States: []jobs.State{jobs.Succeeded}, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(last) > 0 {
			e.current = last[0]
		}
		if e.deploying, err = s.runner.List(ctx, jobs.Filter{Environment: name, States: []jobs.State{jobs.Queued, jobs.Running}, Limit: environmentHistory}); err != nil {
			return nil, err
		}
		slices.Reverse(e.deploying)
		if e.history, err = s.runner.List(ctx, jobs.Filter{Environment: name, Limit: environmentHistory}); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// listEnvironments: GET /api/environments.
func (s *server) listEnvironments(c echo.Context) error {
	envs, err := s.environments(c.Request().Context())
	if err != nil {
		return err
	}
	now := time.Now()
	runs := func(rs []*jobs.Run) []api.Run {
		out := make([]api.Run, 0, len(rs))
		for _, r := range rs {
			out = append(out, toRunJSON(r, now))
		}
		return out
	}
	out := make([]api.Environment, 0, len(envs))
	for _, e := range envs {
		ae := api.Environment{Name: e.name, Deploying: runs(e.deploying), History: runs(e.history)}
		if e.current != nil {
			cur := toRunJSON(e.current, now)
			ae.Current = &cur
		}
		out = append(out, ae)
	}
	return c.JSON(http.StatusOK, out)
}

// showEnvironments is the Environments page.
func (s *server) showEnvironments(c echo.Context) error {
	envs, err := s.environments(c.Request().Context())
	if err != nil {
		return err
	}
	p := views.EnvironmentsPage{Session: s.session(c)}
	for _, e := range envs {
		v := views.EnvironmentView{Name: e.name, Deploying: toViews(e.deploying), History: toViews(e.history)}
		if e.current != nil {
			cur := toView(e.current)
			v.Current = &cur
		}
		p.Environments = append(p.Environments, v)
	}
	return render(c, http.StatusOK, views.EnvironmentsList(p))
}
