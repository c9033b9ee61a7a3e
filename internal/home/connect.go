package home

import (
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/embassy-project/embassy/internal/access"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/transport"
)

// AgentCertTTL is how long the agent's TLS client certificate is valid. A
// fresh TLS key and certificate are made per process; nothing is stored.
const AgentCertTTL = 24 * time.Hour

type agentCert struct {
	once sync.Once
	cert tls.Certificate
	err  error
}

// Connect opens a remote host as this guest's agent (a hosts.Connector).
func (h *Home) Connect(d *transport.Descriptor) (shardstore.Store, error) {
	ac := &h.cert
	ac.once.Do(func() {
		ac.cert, ac.err = access.NewAgentCertificate(h.Agent, h.Identity.Guest, time.Now(), AgentCertTTL)
	})
	if ac.err != nil {
		return nil, fmt.Errorf("agent certificate: %w", ac.err)
	}
	c := transport.NewClient(d, h.Identity.Guest, ac.cert)
	c.Retention = h.Config.Retention()
	h.fence.mu.Lock()
	c.Dataset, c.Epoch = h.fence.dataset, h.fence.epoch
	h.fence.mu.Unlock()
	return c, nil
}
