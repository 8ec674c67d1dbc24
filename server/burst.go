package server

import (
	"runtime"
	"time"

	"tandem/pipeline"
)

// Collection first during bursts (pipeline/burst.go): while collection
// serves on average at least busyPerCore requests per core at once, the
// pipeline starts no new batch, for as long as the oldest unprocessed
// event is younger than collectionFirstMaxAge (half of
// --max-pipeline-lag when that is shorter, so that the backpressure rule
// still sees the pipeline work before it refuses).

// busyPerCore is the mean number of collection requests in flight per
// core (GOMAXPROCS) from which collection counts as busy: far more than a
// load the node keeps up with holds (a request takes a few milliseconds
// when the node is not saturated), about what clients that send as fast as
// they are answered hold.
const busyPerCore = 2

// collectionFirstMaxAge is how old the oldest unprocessed event may get
// while the pipeline waits for a burst of collection to end.
const collectionFirstMaxAge = 30 * time.Second

// collectionFirst makes the rule for this node's pipeline.
func (s *Server) collectionFirst() *pipeline.CollectionFirst {
	maxAge := collectionFirstMaxAge
	if s.hooks.collectionFirstMaxAge > 0 {
		maxAge = s.hooks.collectionFirstMaxAge
	}
	if b := s.cfg.MaxPipelineLag; b > 0 {
		maxAge = min(maxAge, b/2)
	}
	return pipeline.NewCollectionFirst(pipeline.CollectionFirstOptions{
		Occupancy: func() float64 {
			if s.inflight == nil { // before routes: nothing served yet
				return 0
			}
			return s.inflight.Occupancy()
		},
		Busy:   float64(busyPerCore * runtime.GOMAXPROCS(0)),
		Age:    func() time.Duration { return s.Lag.Backlog().Age(time.Now()) },
		MaxAge: maxAge,
		// Collection's rate against the pipeline's own pace: a load the
		// pipeline keeps up with is not a burst to wait out.
		Arrivals: func() float64 { return float64(s.Committer.Stats().Bytes) },
		Capacity: func() float64 {
			if s.Pipeline == nil { // before the pipeline is made
				return 0
			}
			return s.Pipeline.Capacity()
		},
		Metrics: s.Metrics,
	})
}
