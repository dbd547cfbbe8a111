package cluster

import "slices"

// Report is the cluster's part of the node's /status page.
type Report struct {
	Name      string   `json:"name"`
	Addr      string   `json:"addr"`
	Encrypted bool     `json:"encrypted"`
	Seeds     []string `json:"seeds"`
	Alive     int      `json:"alive"`
	Dead      int      `json:"dead"`
	Left      int      `json:"left"`
	// HealthScore is memberlist's awareness: 0 is healthy; each point
	// stretches this node's probe interval by one more ProbeInterval.
	HealthScore int `json:"health_score"`
	// DetectTypical and DetectWorst are FailureDetection for the current
	// cluster size: how long a killed member takes to be declared dead.
	DetectTypical string   `json:"detect_typical"`
	DetectWorst   string   `json:"detect_worst"`
	Members       []Member `json:"members"`
}

// Status returns a Report of the live figures (a JSON-marshalable value).
func (c *Cluster) Status() any {
	members := c.Members()
	r := Report{
		Name:      c.cfg.Name,
		Addr:      c.Addr(),
		Encrypted: len(c.cfg.SecretKey) > 0,
		Seeds:     slices.Clone(c.seeds),
		Members:   members,
	}
	for _, m := range members {
		switch m.Status {
		case StatusAlive:
			r.Alive++
		case StatusDead:
			r.Dead++
		case StatusLeft:
			r.Left++
		}
	}
	c.mu.Lock()
	list := c.list
	c.mu.Unlock()
	if list != nil {
		r.HealthScore = list.GetHealthScore()
	}
	typical, worst := c.cfg.FailureDetection(len(members))
	r.DetectTypical, r.DetectWorst = typical.String(), worst.String()
	return r
}
