package views

import "time"

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
