package posts

import (
	"context"
	"slices"
)

// AddViews counts a batch of views of one post in one write: each job id
// not among the post's recently counted ones adds one view. The worker
// role (stage 8) gathers view jobs for a short window and calls this once
// per post, so a popular post costs one store write per window instead of
// one per view; a batch delivered again counts once.
func (s *Service) AddViews(ctx context.Context, id string, jobIDs []string) error {
	_, err := s.update(ctx, id, func(rec *record) (bool, error) {
		changed := false
		for _, j := range jobIDs {
			if slices.Contains(rec.ViewJobs, j) {
				continue
			}
			rec.Views++
			rec.ViewJobs = append(rec.ViewJobs, j)
			changed = true
		}
		if len(rec.ViewJobs) > viewRing {
			rec.ViewJobs = rec.ViewJobs[len(rec.ViewJobs)-viewRing:]
		}
		return changed, nil
	})
	return err
}
