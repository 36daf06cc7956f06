package ui

import (
	"sync"
	"time"
)

// rater turns byte counters into rates. It keeps one sample of every
// counter and measures against it once at least interval has passed, so
// the rates do not depend on how many pages poll, nor how often; between
// measurements it answers the last rates. It holds one sample per
// counter present in the last measurement: counters of peers gone drop
// out with the next one.
type rater struct {
	interval time.Duration

	mu    sync.Mutex // guards all following fields
	at    time.Time  // when base was taken; zero before the first
	base  map[string][2]uint64
	rates map[string][2]float64
}

func newRater(interval time.Duration) *rater { return &rater{interval: interval} }

// update takes the counters (tx, rx) at now and returns the rates of
// those it has measured; a counter seen for the first time, or one that
// went backwards (the router restarted its datapath), has none yet.
func (r *rater) update(now time.Time, cur map[string][2]uint64) map[string][2]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch dt := now.Sub(r.at); {
	case r.at.IsZero() || dt < 0:
		r.at, r.base, r.rates = now, cur, map[string][2]float64{}
	case dt >= r.interval:
		rates := make(map[string][2]float64, len(cur))
		for k, c := range cur {
			b, ok := r.base[k]
			if !ok || c[0] < b[0] || c[1] < b[1] {
				continue
			}
			s := dt.Seconds()
			rates[k] = [2]float64{float64(c[0]-b[0]) / s, float64(c[1]-b[1]) / s}
		}
		r.at, r.base, r.rates = now, cur, rates
	}
	out := make(map[string][2]float64, len(cur))
	for k := range cur {
		if v, ok := r.rates[k]; ok {
			out[k] = v
		}
	}
	return out
}
