package views

import (
	"slices"
	"time"
)

// chartSlots is how many runs the duration chart has room for.
const chartSlots = 50

func maxSeconds(bars []Bar) float64 {
	m := 0.0
	for _, b := range bars {
		m = max(m, b.Seconds)
	}
	return m
}

// barHeight scales a bar to 0..100, leaving a sliver for zero so every run shows.
func barHeight(bars []Bar, b Bar) float64 {
	m := maxSeconds(bars)
	if m == 0 {
		return 2
	}
	return max(2, b.Seconds/m*98)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// trendSummary says a group's latest duration and its median over the runs
// that had it.
func trendSummary(tr Trend) string {
	var secs []float64
	last := -1.0
	for _, b := range tr.Bars {
		if b.ID != 0 {
			secs = append(secs, b.Seconds)
			last = b.Seconds
		}
	}
	if len(secs) == 0 {
		return "never ended"
	}
	slices.Sort(secs)
	median := secs[len(secs)/2]
	if len(secs)%2 == 0 {
		median = (secs[len(secs)/2-1] + secs[len(secs)/2]) / 2
	}
	return "last " + Duration(seconds(last)) + " · median " + Duration(seconds(median))
}
