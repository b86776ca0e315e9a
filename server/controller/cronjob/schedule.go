package cronjob

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
)

// maxMissed is how many missed start times are walked through before the
// controller gives up on catching up (Kubernetes warns past 100).
const maxMissed = 100

// schedule parses a CronJob's schedule in its time zone (spec.timeZone,
// or a CRON_TZ= prefix, or the controller's local zone).
func schedule(cj *batchv1.CronJob) (cron.Schedule, *time.Location, error) {
	loc := time.Local
	if tz := cj.Spec.TimeZone; tz != nil && *tz != "" {
		l, err := time.LoadLocation(*tz)
		if err != nil {
			return nil, nil, fmt.Errorf("unknown time zone %s: %w", *tz, err)
		}
		loc = l
	}
	s, err := cron.ParseStandard(cj.Spec.Schedule)
	if err != nil {
		return nil, nil, fmt.Errorf("unparseable schedule %q: %w", cj.Spec.Schedule, err)
	}
	return s, loc, nil
}

// mostRecent returns the latest start time at or before now that is after
// the last scheduled time (or the creation), how many were missed, and
// the next start time after now. With startingDeadlineSeconds, times
// older than the deadline are not considered.
func mostRecent(cj *batchv1.CronJob, s cron.Schedule, now time.Time) (last *time.Time, missed int, next time.Time) {
	earliest := cj.CreationTimestamp.Time
	if cj.Status.LastScheduleTime != nil {
		earliest = cj.Status.LastScheduleTime.Time
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil {
		if sd := now.Add(-time.Duration(*d) * time.Second); sd.After(earliest) {
			earliest = sd
		}
	}
	t := s.Next(earliest)
	// Far behind (a long-stopped controller): jump close to now.
	if t2 := s.Next(t); !t2.IsZero() && now.Sub(t) > 1000*t2.Sub(t) {
		t = s.Next(now.Add(-2 * t2.Sub(t)))
		missed = maxMissed + 1
	}
	for !t.IsZero() && !t.After(now) {
		tt := t
		last = &tt
		missed++
		t = s.Next(t)
	}
	return last, missed, t
}
