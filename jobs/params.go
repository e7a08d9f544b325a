package jobs

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

var (
	// ErrUnknownJob is returned for a job name the config does not define.
	ErrUnknownJob = errors.New("unknown job")
	// ErrInvalidParam is returned when a run's parameters fail validation.
	ErrInvalidParam = errors.New("invalid parameter")
)

// maxParamLen bounds a parameter value; environments have limits and a
// deploy target never needs more.
const maxParamLen = 4096

// ParamError names the parameter that failed validation.
type ParamError struct {
	Field string
	Msg   string
}

func (e *ParamError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

// Unwrap lets errors.Is match ErrInvalidParam.
func (e *ParamError) Unwrap() error { return ErrInvalidParam }

func (p *Param) check(v string) error {
	if len(v) > maxParamLen {
		return fmt.Errorf("is longer than %d bytes", maxParamLen)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return errors.New("contains a NUL byte")
	}
	if !utf8.ValidString(v) {
		return errors.New("is not valid UTF-8")
	}
	if len(p.Choices) > 0 && !slices.Contains(p.Choices, v) {
		return fmt.Errorf("must be one of %s", strings.Join(p.Choices, ", "))
	}
	if p.re != nil && !p.re.MatchString(v) {
		return fmt.Errorf("must match %s", p.Pattern)
	}
	return nil
}

// ValidateParams checks given against the job's schema and returns the full
// set of values with defaults applied.
func (j *Job) ValidateParams(given map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(j.Params))
	for name := range given {
		if !slices.ContainsFunc(j.Params, func(p Param) bool { return p.Name == name }) {
			return nil, &ParamError{Field: name, Msg: fmt.Sprintf("is not a parameter of job %s", j.Name)}
		}
	}
	for i := range j.Params {
		p := &j.Params[i]
		v, ok := given[p.Name]
		if !ok || v == "" {
			v = p.Default
		}
		if v == "" {
			if p.Required {
				return nil, &ParamError{Field: p.Name, Msg: "is required"}
			}
			out[p.Name] = ""
			continue
		}
		if err := p.check(v); err != nil {
			return nil, &ParamError{Field: p.Name, Msg: err.Error()}
		}
		out[p.Name] = v
	}
	return out, nil
}

// LockName resolves the job's lock for the given parameter values; empty means
// the run takes no lock.
func (j *Job) LockName(params map[string]string) string {
	if j.Lock == "" {
		return ""
	}
	return os.Expand(j.Lock, func(k string) string { return params[k] })
}
