package queue

import (
	"context"
	"encoding/json"
	"fmt"
)

// StepDown asks the leader of a stream to hand its leadership over, to the
// server named preferred when it is set, or to any other current replica.
// A key-value bucket is the stream "KV_<bucket>". A graceful hand-over
// takes well under a second, where a dead leader costs nats-server's Raft
// 4-9s to replace: move leaders off a node before stopping it. Asking for a preferred server
// that already leads is not an error.
func (c *Conn) StepDown(ctx context.Context, stream, preferred string) error {
	var req struct {
		Placement *struct {
			Preferred string `json:"preferred"`
		} `json:"placement,omitempty"`
	}
	if preferred != "" {
		req.Placement = &struct {
			Preferred string `json:"preferred"`
		}{preferred}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("queue: step down %s: %w", stream, err)
	}
	// The JetStream API of nats.go v1.55.0 has no call for this; it is a
	// plain request in JetStream's API subject space.
	msg, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, body)
	if err != nil {
		return fmt.Errorf("queue: step down %s: %w", stream, err)
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("queue: step down %s: decode response: %w", stream, err)
	}
	if resp.Error != nil {
		if preferred != "" && resp.Error.Description == fmt.Sprintf("preferred server %q is already leader", preferred) {
			return nil
		}
		return fmt.Errorf("queue: step down %s: %s (err_code %d)", stream, resp.Error.Description, resp.Error.ErrCode)
	}
	if !resp.Success {
		return fmt.Errorf("queue: step down %s: not successful", stream)
	}
	return nil
}
