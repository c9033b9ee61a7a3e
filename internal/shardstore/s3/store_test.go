package s3store_test

import (
	"testing"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/shardstore/storetest"
)

func TestConformance(t *testing.T) {
	needGateway(t)
	storetest.Run(t, func(t *testing.T) shardstore.Store {
		s, _ := openStore(t, nil)
		return s
	})
}
