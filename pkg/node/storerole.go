package node

import (
	"fmt"

	"github.com/scalestack/scalestack/pkg/store"
)

// openStore builds and opens the store role of a primary or replica node.
func (n *Node) openStore() error {
	sc := n.cfg.RoleConfig.Store
	sc.Addr = n.listenAddr(n.cfg.Ports.Store)
	sc.NodeName = n.cfg.Name
	sc.DataDir = n.cfg.DataDir
	sc.Logger = n.log.With("role", "store")
	sc.Metrics = n.reg
	s, err := store.New(sc)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := n.openRole("store", s); err != nil {
		return err
	}
	n.store = s
	return nil
}
