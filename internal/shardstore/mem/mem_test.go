package mem_test

import (
	"testing"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/shardstore/mem"
	"github.com/embassy-project/embassy/internal/shardstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) shardstore.Store { return mem.New() })
}
