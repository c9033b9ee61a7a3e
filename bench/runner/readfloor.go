package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/embassy-project/embassy/internal/agent"
)

// ReadFloor is reading the corpus and doing nothing else (bench/readfloor,
// cold like every timed step): no backup of it can be faster, so it is a
// stage of the limit model, measured rather than benchmarked. It is measured
// two ways each round, leaving the pages in the page cache and dropping them
// behind the readers as the backup does (DropBehind); which is cheaper
// depends on the machine (on a VM that hands freed memory back to its host,
// filling the cache with fresh pages costs more than recycling them), and
// the limit takes the cheaper.
type ReadFloor struct {
	DropBehind bool       `json:"drop_behind"`
	Readers    int        `json:"readers"`
	Walkers    int        `json:"walkers"`
	Batch      int        `json:"batch,omitempty"` // small files read as one batch
	Seconds    float64    `json:"seconds"`         // median
	Spread     [2]float64 `json:"seconds_spread"`
	CPU        float64    `json:"cpu_s"` // median user + system
	Bytes      int64      `json:"bytes"`
	Files      int64      `json:"files"`
	MBps       float64    `json:"mb_per_s"`
}

type readFloorSample struct {
	seconds, cpu float64
	bytes, files int64
	batch        int // as readfloor reports it: lowered to the limit on open files
}

// readFloorOnce resets the work copy to the pristine corpus (the state the
// first backups read) and times reading it with as many readers as the
// embassy backup has, dropping the pages behind them if dropBehind.
func readFloorOnce(ctx context.Context, c *config, m *measurer, src string, round int, dropBehind bool) (readFloorSample, error) {
	if err := resetCopy(ctx, c.corpus, src); err != nil {
		return readFloorSample{}, err
	}
	argv := []string{c.readfloor, "-readers", strconv.Itoa(agent.Readers), "-walkers", strconv.Itoa(agent.Walkers), "-batch", strconv.Itoa(agent.ReadBatch)}
	label := fmt.Sprintf("r%d-readfloor", round)
	if dropBehind {
		argv, label = append(argv, "-drop-behind"), label+"-drop-behind"
	}
	op, err := m.timed(ctx, label, cmdSpec{argv: append(argv, src)})
	if err != nil {
		return readFloorSample{}, err
	}
	var out struct {
		Files int64 `json:"files"`
		Bytes int64 `json:"bytes"`
		Batch int   `json:"batch"`
	}
	if err := json.Unmarshal(op.stdout, &out); err != nil {
		return readFloorSample{}, fmt.Errorf("readfloor output: %w", err)
	}
	return readFloorSample{seconds: op.seconds, cpu: op.cpu, bytes: out.Bytes, files: out.Files, batch: out.Batch}, nil
}

func summariseReadFloor(ss []readFloorSample, readers, walkers int, dropBehind bool) *ReadFloor {
	if len(ss) == 0 {
		return nil
	}
	var secs, cpu []float64
	for _, s := range ss {
		secs, cpu = append(secs, s.seconds), append(cpu, s.cpu)
	}
	med, lo, hi := stats(secs)
	cmed, _, _ := stats(cpu)
	f := &ReadFloor{DropBehind: dropBehind, Readers: readers, Walkers: walkers, Seconds: med, Spread: [2]float64{lo, hi}, CPU: cmed, Bytes: ss[0].bytes, Files: ss[0].files, Batch: ss[0].batch}
	if med > 0 {
		f.MBps = float64(f.Bytes) / 1e6 / med
	}
	return f
}
