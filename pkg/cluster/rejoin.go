package cluster

import (
	"time"
)

// rejoinLoop re-joins the seeds while this node sees fewer alive members
// than it has seen (or is alone). memberlist stops probing a dead member
// and forgets it after PushPullInterval, so two halves of a cluster that
// lost each other, or a node whose peers all restarted with fresh state,
// would otherwise never meet again. Only seeds not currently seen alive are
// contacted: joining a member we already gossip with teaches nothing. The
// loop logs at info when an episode begins and when a seed answers, and
// repeats failed attempts at debug level.
func (c *Cluster) rejoinLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.RejoinInterval)
	defer t.Stop()
	short := false
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		alive, most, targets := c.rejoinTargets()
		if alive >= most && alive > 1 || len(targets) == 0 {
			if short && alive >= most {
				c.log.Info("membership restored", "alive", alive)
			}
			short = false
			continue
		}
		if !short {
			c.log.Info("fewer members alive than seen, re-joining seeds",
				"alive", alive, "seen", most, "seeds", targets, "every", c.cfg.RejoinInterval)
		}
		short = true
		c.metrics.rejoins.Inc()
		n, err := c.join(c.ctx, targets)
		if err != nil {
			c.log.Debug("re-join failed", "seeds", targets, "err", err)
			continue
		}
		c.log.Info("re-joined seeds", "seeds_contacted", n, "alive", c.NumAlive())
	}
}

// rejoinTargets returns the alive count, the most seen, and the seeds that
// are neither this node nor an alive member.
func (c *Cluster) rejoinTargets() (alive, most int, targets []string) {
	candidates := c.withoutSelf(c.seeds)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(time.Now())
	seen := make(map[string]bool, len(c.members))
	for _, m := range c.members {
		if m.Status == StatusAlive {
			seen[m.Addr] = true
		}
	}
	for _, s := range candidates {
		if !seen[s] {
			targets = append(targets, s)
		}
	}
	return c.numAliveLocked(), c.maxAlive, targets
}
