package agent

import (
	"bytes"
	"context"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embassy-project/embassy/internal/chunk"
	"github.com/embassy-project/embassy/internal/erasure"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/home"
	"github.com/embassy-project/embassy/internal/hosts"
	"github.com/embassy-project/embassy/internal/pack"
	"github.com/embassy-project/embassy/internal/seal"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/snapshot"
	"github.com/embassy-project/embassy/internal/transport"
	"github.com/embassy-project/embassy/internal/tree"
)

// PackTarget is the plaintext size at which a data pack is closed and
// uploaded.
const PackTarget = 16 << 20

// TreePackTarget is the size at which a tree pack is closed. The tree
// packer's buffer grows as it fills (trees are a few percent of the data),
// and is live while data packs fill alongside: at PackTarget it held up to
// 32 MiB of a 1 GB backup's heap.
const TreePackTarget = 4 << 20

// packBufSize is a data pack buffer's capacity: a frame that would take a
// pack past PackTarget closes it first, so the buffer never has to grow.
const packBufSize = PackTarget

// PackMaxBlobs is the blob count at which a pack is closed even if smaller:
// until a pack is stored, each of its blobs costs ~1 KB of memory here (its
// dedup state, index entry and cache insert), and frames of small, well
// compressing files put 200 000 of them in 16 MiB.
const PackMaxBlobs = 32 << 10

// readerBuffer is each reader's chunker scan buffer: the chunker's minimum
// plus one average chunk, so Readers of them stay small. The chunker needs
// MaxSize bytes in view at each cut and slides what it has not consumed to
// the front of its buffer when it reaches the end, ~3.5 bytes moved per byte
// chunked. With four average chunks of room it moves about one (perf on the
// population CSV: half the copying samples), but the 6 MiB more of live heap
// made a 1 GB backup collect 35-37 times instead of 30-32, which took back
// what the copies saved.
const readerBuffer = chunk.MinBufferSize + chunk.AvgSize

// Uploaders is the number of packs sealed, coded and stored at once. One is
// enough: a 16 MiB pack takes ~30 ms to seal, code and hash, and a PUT to a
// host node ~75 ms (most of it the host's durable log append), less than
// the ~150 ms a cold first backup takes to fill the next pack; and each in
// flight holds ~40 MiB (its pack buffer and its shards buffer). A second
// one for host nodes, which hid the PUT's latency when filling a pack took
// longer, now only raises the live heap to the soft limit: a cold 1 GB
// first backup over mTLS took 9.2–9.6 s with one and 9.5–10.5 s with two
// (alternated), with 1.2 s less CPU.
const Uploaders = 1

// Options configures one backup.
type Options struct {
	Dataset   string
	Path      string    // a file, a directory, or "-" for Stdin
	Stdin     io.Reader // read when Path is "-"
	StdinName string    // the file name recorded for Stdin
	Hostname  string
	Now       func() time.Time
	Progress  func(Progress) // called from another goroutine every ProgressEvery
	Workers   int            // hash/compress workers; default one per CPU (min of NumCPU and GOMAXPROCS)
	// KeepCache leaves in the page cache the pages of the files read. By
	// default the pages a backup brings in are dropped as they are read
	// (Linux 6.5 and later, on file systems where cachestat sees them; see
	// sourceFile.dropBehind); what was cached before stays.
	KeepCache bool
}

// ProgressEvery is how often Options.Progress is called.
const ProgressEvery = 250 * time.Millisecond

// Progress is a running count.
type Progress struct {
	Files, Dirs   uint64
	Bytes         uint64 // source bytes processed (read or reused)
	ReadBytes     uint64 // source bytes actually read
	NewBytes      uint64 // bytes of new chunks (before compression)
	UploadedBytes uint64 // shard bytes written to hosts
	PacksUploaded uint64
}

// Result describes a finished backup.
type Result struct {
	Dataset       string   `json:"dataset"`
	Seq           uint64   `json:"seq"`
	Envelope      string   `json:"envelope"` // hex address of the signed envelope
	Files         uint64   `json:"files"`
	Dirs          uint64   `json:"dirs"`
	Symlinks      uint64   `json:"symlinks"`
	Skipped       []string `json:"skipped,omitempty"` // special files not stored
	Bytes         uint64   `json:"bytes"`
	ReadBytes     uint64   `json:"read_bytes"`
	NewBytes      uint64   `json:"new_bytes"`
	StoredBytes   uint64   `json:"stored_bytes"`   // sealed pack bytes of new packs
	UploadedBytes uint64   `json:"uploaded_bytes"` // shard bytes written, all hosts
	NewPacks      uint64   `json:"new_packs"`
	Packs         int      `json:"packs"` // packs the snapshot references
	Seconds       float64  `json:"seconds"`
}

type backup struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	opts   Options
	ds     *guest.Dataset
	pub    hpke.PublicKey
	hasher *chunk.Hasher
	mac    chunk.Key
	cache  *cache
	hosts  []*hosts.Host
	params erasure.Params

	jobs      chan *chunkJob // each the first of a unit (chunkJob.next)
	uploads   chan *packJob
	workers   sync.WaitGroup
	upwg      sync.WaitGroup
	finishers sync.WaitGroup

	data, trees *packer

	mu       sync.Mutex
	inflight map[chunk.ID]*blobState
	newPacks map[[16]byte]snapshot.PackRef
	// used holds the packs the snapshot references; marked once a blob,
	// under a lock of its own so as not to wait on the claims of b.mu.
	usedMu  sync.Mutex
	used    map[[16]byte]struct{}
	skipped []string

	// packBufs holds the data pack buffers no pack is using: one per
	// uploader and one for the pack being filled, nil until first used. A
	// packer starting a pack waits for one, so a pack waiting for an
	// uploader does not make a third 21 MiB buffer live.
	packBufs chan []byte

	recMu           sync.Mutex // serialises cache records
	unrecorded      []durablePack
	unrecordedBlobs int

	cbufs   sync.Pool      // chunker scan buffers for tree encodings (chunk.BufferSize)
	tbufs   sync.Pool      // stored forms of tree blobs, until the packer has copied them
	chunker *chunk.Chunker // the walker's own chunker (standard input)

	reads     chan []readJob // batches of regular files under chunk.MinSize, for the readers
	bigReads  chan readJob   // the others, for one reader per scan slot
	batchSize int            // the most files in a batch of reads
	walkers   chan struct{}  // slots for directories listed by goroutines of their own
	readers   sync.WaitGroup
	budget    *budget   // bytes read ahead of the workers
	rbufs     sync.Pool // readers' chunker scan buffers (readerBuffer)
	cbuf      bufPool   // chunk copies in flight to the workers
	// scans bounds the files chunked at once (each holds a readerBuffer):
	// one per CPU, the readers of bigReads, and a small file that grew
	// since it was listed.
	scans chan struct{}

	files, dirs, links                           atomic.Uint64
	bytes, readBytes, newBytes, stored, uploaded atomic.Uint64
	packsUp                                      atomic.Uint64
}

// readJob is one regular file for a reader. The pendingFile's WaitGroup holds
// one count for the read itself, released when the whole file is queued.
type readJob struct {
	path string
	size int64 // as listed
	pf   *pendingFile
	// f is the file, if the walker opened it (sourceDir.openEntry); else
	// the reader opens path.
	f *sourceFile
	// drop: the options allow it and the file is on its directory's
	// device, whose file system keeps its pages where cachestat sees them
	// (dropOK), so the reader may drop the pages it brings in
	// (sourceFile.dropBehind). A file on
	// another device (bind-mounted from another file system, or any file
	// of an overlay, which reports its real file's device) is left alone.
	drop bool
}

// close closes the file the walker opened for j, if any, when no reader
// will read it.
func (j readJob) close() {
	if j.f != nil {
		j.f.Close()
	}
}

// ReadBatch is the most files under chunk.MinSize a reader takes at once
// (fewer where the limit on open files is low: the walker opens a batch's
// files as it gathers them, and they stay open while the batch waits for a
// reader and while the reader reads it). Small files are read a
// directory's batch at a time: every file of the batch is open and the
// kernel told it will be read (posix_fadvise WILLNEED) before the first is
// read, so the batch's reads
// are in flight together, where a reader reading one file at a time waits
// for each in turn. On the benchmark machine reading the registry cold
// took 8.4–9.4 s one file at a time (16 readers) and 3.7–4.2 s in batches
// of 32–128 (bench/readfloor), with 40 % less CPU: a reader blocks once per
// batch instead of once per file.
const ReadBatch = 64

// ReadBatchBytes bounds the listed bytes of one batch.
const ReadBatchBytes = 1 << 20

// readBatch gathers one directory's small files for a reader.
type readBatch struct {
	b     *backup
	jobs  []readJob
	bytes int64
	drop  bool   // the options and the directory's file system allow dropping (dropOK)
	dev   uint64 // the directory's device
	left  int    // files of the directory not yet added, as listed (a capacity hint)
}

// add queues j, handing the batch to the readers once it is full.
func (rb *readBatch) add(j readJob) error {
	if rb.jobs == nil {
		// Sized once per batch (the readers take the slice): as many as
		// the directory has files left, up to a full batch.
		rb.jobs = make([]readJob, 0, min(max(rb.left, 1), rb.b.batchSize))
	}
	rb.jobs = append(rb.jobs, j)
	rb.left--
	rb.bytes += j.size
	if len(rb.jobs) >= rb.b.batchSize || rb.bytes >= ReadBatchBytes {
		return rb.flush()
	}
	return nil
}

// flush hands the files gathered so far to the readers.
func (rb *readBatch) flush() error {
	if len(rb.jobs) == 0 {
		return nil
	}
	select {
	case rb.b.reads <- rb.jobs:
		rb.jobs, rb.bytes = nil, 0
		return nil
	case <-rb.b.ctx.Done():
		err := context.Cause(rb.b.ctx)
		rb.abandon(err)
		return err
	}
}

// abandon releases the files gathered and not handed to the readers, which
// nothing will read now, failing their reads with err.
func (rb *readBatch) abandon(err error) {
	for _, j := range rb.jobs {
		j.close()
		j.pf.err = err
		j.pf.wg.Done()
	}
	rb.jobs, rb.bytes = nil, 0
}

// Readers is the number of batches of files under chunk.MinSize read at
// once (see ReadBatch; larger files have one reader per scan slot of their
// own). Reading many small files is bound by system calls and, on a cold
// cache, by the disk's queue depth. Before files were read in batches, on
// the benchmark machine reading a registry cold took 15 s with one reader,
// 5.8 s with four and 3.5 s with eight; once small files shared frames and
// the workers needed less CPU, a cold 1 GB backup (464 000 files) took
// 18.4 s with eight (GOMAXPROCS 8), 15.9–16.4 s with sixteen (GOMAXPROCS
// 16) and 16.2 s with 32. With four walkers: 12.2–12.3 s with ten,
// 11.5–11.7 s with sixteen, 11.0–11.6 s with 24 (alternated).
const Readers = 16

// Walkers is how many directories are listed at once: the walker hands a
// subdirectory to a goroutine of its own while fewer than Walkers are
// listing, and lists it itself otherwise. Reading then starts in every
// part of the tree at once, so a registry's small files (bound by the
// disk) are read while its large ones (bound by the CPU) are compressed,
// instead of one kind after the other in name order; and the Lstat calls
// of an incremental backup overlap.
const Walkers = 4

// ReadAhead bounds the chunk buffers read but not yet hashed and
// compressed, so reading runs ahead of the workers without memory growing
// with the input. 16 MiB is 30 000 small files or a few dozen chunks: a
// cold 1 GB first backup took the same time with 32 MiB (14.4–15.3 s
// either way, alternated) and 16 MiB less heap.
const ReadAhead = 16 << 20

// blobState is a blob being stored by this backup. Until finished, the
// chunk jobs of its duplicates wait in waiters (the workers never block on
// one another: a worker's open frame could otherwise wait on a blob in
// another worker's, and that on this one); tree blobs wait on done. Those
// and a failure are in a blobWait made only when needed: a first backup has
// a blobState for each of its ~500 000 blobs in flight at some point, most
// with no duplicate, and 96 bytes is the size class below 144.
type blobState struct {
	ref      tree.Ref
	job      *chunkJob // the job that claimed it, completed when finished
	wait     *blobWait // (b.mu)
	finished bool      // ref and the failure are set (b.mu)
}

// blobWait is what waits on a blobState, and its failure.
type blobWait struct {
	done    chan struct{} // made when a tree blob waits, closed when finished (b.mu)
	waiters []*chunkJob   // jobs of duplicates to complete when finished (b.mu)
	err     error
}

// waits returns st's blobWait, made if need be; b.mu must be held.
func (st *blobState) waits() *blobWait {
	if st.wait == nil {
		st.wait = &blobWait{}
	}
	return st.wait
}

// failure is why st failed, once finished; b.mu must be held.
func (st *blobState) failure() error {
	if st.wait == nil {
		return nil
	}
	return st.wait.err
}

// setFinished finishes st at ref, or failed with err; b.mu must be held.
func (st *blobState) setFinished(ref tree.Ref, err error) {
	st.ref, st.finished = ref, true
	if err != nil {
		st.waits().err = err
	}
}

// SmallBlob is the raw length under which a data blob is not compressed
// alone but grouped with others into a frame (docs/spec/pack.md): zstd on
// one 350-byte file costs ~5 µs and saves ~20 %; on 64 KiB of them it runs
// five times as fast and saves ~80 %.
const SmallBlob = 64 << 10

// FrameTarget is the raw length at which a worker closes its frame of small
// blobs. A frame holds at most FrameTarget + SmallBlob bytes.
const FrameTarget = 64 << 10

// FrameWait is how long a worker with an open frame waits for another chunk
// before it closes the frame anyway, so that the files in it complete.
const FrameWait = 2 * time.Millisecond

// frame is a worker's open frame of small data blobs, and the buffer its
// stored forms are compressed into (the pack builder copies them).
type frame struct {
	raw     []byte
	members []pack.Member
	states  []*blobState
	out     []byte
}

// chunkJob is one chunk for the workers. Jobs go to the workers in units:
// a reader hands over a batch's small files together (one channel send,
// one wake-up), linked by next.
type chunkJob struct {
	raw   []byte
	buf   *[]byte   // raw's buffer, back to b.cbuf once stored; or
	batch *batchBuf // the buffer of small files raw is a slice of
	ref   tree.Ref
	err   error
	wg    *sync.WaitGroup
	next  *chunkJob // the next job of its unit
}

// batchBuf is a buffer of b.cbuf that a reader reads a batch of small files
// into, one after the other, so that each file's chunk is a slice of it:
// one buffer and one take of the read-ahead budget a batch instead of one a
// file (a 1 GB first backup's 455 000 small files had each taken and given
// back a buffer and budget; of the buffers made anew as collections empty
// the pool, 83 MB became 50). It goes back, with its budget, once the last
// chunk in it is stored and the reader is done with it.
type batchBuf struct {
	bp   *[]byte
	off  int          // the next file's place (the reader's)
	refs atomic.Int32 // chunk jobs in it not yet stored, and the reader's
}

// newBatch returns a batchBuf with room for every file of batch as listed
// and one byte more (see readOpen), or nil if the backup ended while it
// waited for the budget.
func (b *backup) newBatch(batch []readJob) *batchBuf {
	n := 0
	for _, j := range batch {
		n += int(j.size) + 1
	}
	bp := b.cbuf.get(n)
	if !b.budget.acquire(b.ctx, cap(*bp)) {
		b.cbuf.put(bp)
		return nil
	}
	bb := &batchBuf{bp: bp}
	bb.refs.Store(1)
	return bb
}

// releaseBatch drops one reference to bb, giving it back with its budget
// when it was the last.
func (b *backup) releaseBatch(bb *batchBuf) {
	if bb.refs.Add(-1) == 0 {
		b.budget.release(cap(*bb.bp))
		b.cbuf.put(bb.bp)
	}
}

// release gives back what a chunk, raw, held: its buffer bp, or its
// reference to its batch's buffer bb. It returns the budget the caller
// gives back: raw's for a buffer of its own, 0 for a batch's (releaseBatch
// gives that back).
func (b *backup) release(raw []byte, bp *[]byte, bb *batchBuf) int {
	if bb != nil {
		b.releaseBatch(bb)
		return 0
	}
	b.cbuf.put(bp)
	return cap(raw)
}

// unit gathers chunk jobs that go to the workers with one send. Each job's
// read-ahead budget is taken as it joins (a batch's small files', as its
// buffer is taken: newBatch), so a reader never holds bytes the workers
// cannot release: when the budget is short it sends what it has before it
// waits (push).
type unit struct {
	head, tail *chunkJob
}

type packJob struct {
	id      [16]byte
	typ     pack.BlobType
	plain   []byte
	entries []pack.Entry
}

// Backup makes one snapshot of opts.Path in opts.Dataset on every host.
func Backup(ctx context.Context, h *home.Home, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Workers <= 0 {
		opts.Workers = min(runtime.NumCPU(), runtime.GOMAXPROCS(0))
	}
	ds, err := h.Dataset(opts.Dataset)
	if err != nil {
		return nil, err
	}
	pub, err := ds.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("dataset %s public key: %w", ds.Name, err)
	}
	mac, err := h.MACKey(opts.Dataset)
	if err != nil {
		return nil, err
	}
	if err := h.PrepareWrite(ctx, opts.Dataset); err != nil {
		return nil, err
	}
	hs, err := hosts.Open(h.Config.Hosts, hosts.Options{Connect: h.Connect})
	if err != nil {
		return nil, err
	}
	for _, x := range hs {
		if !x.Available() {
			return nil, fmt.Errorf("backup writes one shard to every host and %s is not available: %w", x.Name, x.Err)
		}
	}
	c, err := openCache(h.CachePath(opts.Dataset))
	if err != nil {
		return nil, err
	}
	defer c.close()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b := &backup{
		ctx: ctx, cancel: cancel, opts: opts, ds: ds, pub: pub,
		hasher: chunk.NewHasher(chunk.Key(mac)), mac: chunk.Key(mac),
		cache: c, hosts: hs, params: h.Config.Params(),
		jobs:     make(chan *chunkJob, 4096),
		budget:   newBudget(ReadAhead),
		uploads:  make(chan *packJob),
		inflight: map[chunk.ID]*blobState{},
		packBufs: make(chan []byte, Uploaders+1),

		used:     map[[16]byte]struct{}{},
		newPacks: map[[16]byte]snapshot.PackRef{},
	}
	for range cap(b.packBufs) {
		b.packBufs <- nil
	}
	b.cbufs.New = func() any { s := make([]byte, chunk.BufferSize); return &s }
	b.rbufs.New = func() any { s := make([]byte, readerBuffer); return &s }
	b.cbuf.keep = ReadAhead // as many free as in flight: see bufPool
	b.scans = make(chan struct{}, max(2, runtime.NumCPU()))
	b.data = &packer{b: b, typ: pack.BlobData}
	b.trees = &packer{b: b, typ: pack.BlobTree}

	seq, prev, err := b.head(h)
	if err != nil {
		return nil, err
	}

	for i := 0; i < opts.Workers; i++ {
		b.workers.Add(1)
		go b.worker()
	}
	for i := 0; i < Uploaders; i++ {
		b.upwg.Add(1)
		go b.uploader()
	}
	b.reads = make(chan []readJob, Readers)
	// Batches hold their files open while a walker gathers them, while they
	// wait for a reader and while a reader reads them.
	b.batchSize = batchSize(Walkers + cap(b.reads) + Readers)
	for i := 0; i < Readers; i++ {
		b.readers.Add(1)
		go b.smallReader()
	}
	b.bigReads = make(chan readJob, cap(b.scans))
	for i := 0; i < cap(b.scans); i++ {
		b.readers.Add(1)
		go b.reader(b.bigReads)
	}
	b.walkers = make(chan struct{}, Walkers-1)
	stopProgress := b.progress()

	root, walkErr := b.walkRoot()
	var rootRef []tree.Ref
	if walkErr == nil {
		rootRef, walkErr = b.saveTree(&tree.Tree{Nodes: []tree.Node{root}})
	}
	if walkErr != nil {
		b.fail(walkErr)
	}
	b.finishers.Wait()
	close(b.reads)
	close(b.bigReads)
	b.readers.Wait()
	close(b.jobs)
	b.workers.Wait()
	b.data.flush()
	b.trees.flush()
	close(b.uploads)
	b.upwg.Wait()
	if err := b.recordPack(nil, nil, true); err != nil {
		b.fail(err)
	}
	stopProgress()
	if walkErr == nil {
		walkErr = context.Cause(b.ctx)
	}
	if walkErr != nil {
		if errors.Is(walkErr, context.Canceled) && ctx.Err() != nil && context.Cause(ctx) != nil {
			walkErr = context.Cause(ctx)
		}
		return nil, walkErr
	}

	refs, err := b.packRefs()
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	if err := b.extendRetention(ctx, refs, h.Config.Retention(), now); err != nil {
		return nil, err
	}
	rec := &snapshot.Record{
		Time: now.UnixNano(), Hostname: opts.Hostname, Paths: []string{b.sourceName()}, Root: rootRef,
		Files: b.files.Load(), Dirs: b.dirs.Load(), Symlinks: b.links.Load(), Bytes: b.bytes.Load(),
	}
	sealedRec, err := seal.Seal(pub, RecordAD(ds, seq+1), rec.Marshal())
	if err != nil {
		return nil, fmt.Errorf("seal snapshot record: %w", err)
	}
	names := make([]string, len(hs))
	for i, x := range hs {
		names[i] = x.Name
	}
	env := &snapshot.Envelope{
		Guest: ds.Guest, Dataset: ds.ID, Seq: seq + 1, Prev: prev, Time: now.UnixNano(),
		K: uint8(b.params.K), N: uint8(b.params.N), Hosts: names, Packs: refs, Record: sealedRec,
	}
	signed, err := env.Sign(h.Agent)
	if err != nil {
		return nil, fmt.Errorf("sign envelope: %w", err)
	}
	addr := shardstore.Sum(signed)
	addrs := make([]shardstore.ID, len(hs))
	envs := make([][]byte, len(hs))
	for i := range hs {
		addrs[i], envs[i] = addr, signed
	}
	if err := hosts.PutShards(ctx, hs, addrs, envs, shardstore.KindEnvelope); err != nil {
		return nil, fmt.Errorf("store envelope: %w", err)
	}
	if err := c.addEnvelope(addr, ds.ID, env.Seq); err != nil {
		return nil, err
	}
	if err := c.commit(env.Seq, addr); err != nil {
		return nil, err
	}
	return &Result{
		Dataset: ds.Name, Seq: env.Seq, Envelope: addr.String(),
		Files: b.files.Load(), Dirs: b.dirs.Load(), Symlinks: b.links.Load(), Skipped: b.skipped,
		Bytes: b.bytes.Load(), ReadBytes: b.readBytes.Load(), NewBytes: b.newBytes.Load(),
		StoredBytes: b.stored.Load(), UploadedBytes: b.uploaded.Load(), NewPacks: b.packsUp.Load(),
		Packs: len(refs), Seconds: time.Since(start).Seconds(),
	}, nil
}

// RecordAD is the associated data sealing the record of snapshot seq: it binds
// the record to its guest, dataset and sequence number.
func RecordAD(ds *guest.Dataset, seq uint64) seal.AD {
	ad := seal.AD{Kind: seal.KindRecord, Guest: ds.Guest, Dataset: ds.ID}
	binary.BigEndian.PutUint64(ad.Object[8:], seq)
	return ad
}

// PackAD is the associated data sealing pack id of dataset ds.
func PackAD(ds *guest.Dataset, id [16]byte) seal.AD {
	return seal.AD{Kind: seal.KindPack, Guest: ds.Guest, Dataset: ds.ID, Object: id}
}

// head finds the sequence number and hash the next snapshot follows: the
// newest envelope signed by this agent on any host, or the cache's if newer.
func (b *backup) head(h *home.Home) (uint64, [32]byte, error) {
	seq, prev := b.cache.head()
	for _, x := range b.hosts {
		err := x.Store.List(b.ctx, shardstore.KindEnvelope, func(id shardstore.ID, _ int64) error {
			dsID, s, ok := b.cache.envelope(id)
			if !ok {
				raw, err := x.Store.Get(b.ctx, shardstore.KindEnvelope, id)
				if err != nil {
					return nil // a damaged envelope is check's business; it cannot raise the head
				}
				env, err := snapshot.Verify(raw, h.Agent.Public())
				if err != nil || env.Guest != b.ds.Guest {
					return nil
				}
				dsID, s = env.Dataset, env.Seq
				if err := b.cache.addEnvelope(id, dsID, s); err != nil {
					return err
				}
			}
			if dsID == b.ds.ID && s > seq {
				seq, prev = s, id
			}
			return nil
		})
		if err != nil {
			return 0, prev, fmt.Errorf("read envelopes of host %s: %w", x.Name, err)
		}
	}
	return seq, prev, nil
}

func (b *backup) fail(err error) {
	b.cancel(err)
}

func (b *backup) progress() func() {
	if b.opts.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				b.opts.Progress(b.snapshotProgress())
				return
			case <-t.C:
				b.opts.Progress(b.snapshotProgress())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (b *backup) snapshotProgress() Progress {
	return Progress{Files: b.files.Load(), Dirs: b.dirs.Load(), Bytes: b.bytes.Load(), ReadBytes: b.readBytes.Load(),
		NewBytes: b.newBytes.Load(), UploadedBytes: b.uploaded.Load(), PacksUploaded: b.packsUp.Load()}
}

func (b *backup) sourceName() string {
	if b.opts.Path == "-" {
		return "-"
	}
	abs, err := filepath.Abs(b.opts.Path)
	if err != nil {
		return b.opts.Path
	}
	return abs
}

// walkRoot returns the node for the backed-up path (or stream). The snapshot's
// root tree holds exactly this node, named after the path's last element.
func (b *backup) walkRoot() (tree.Node, error) {
	if b.opts.Path == "-" {
		name := b.opts.StdinName
		if name == "" {
			name = "stdin"
		}
		n := tree.Node{Name: name, Type: tree.File, Mode: 0o644, MTime: b.opts.Now().UnixNano()}
		pf, err := b.chunkStream(b.opts.Stdin, "standard input")
		if err != nil {
			return n, err
		}
		b.files.Add(1)
		return b.finishFile(n, pf)
	}
	abs, err := filepath.Abs(b.opts.Path)
	if err != nil {
		return tree.Node{}, err
	}
	fi, err := lstat(abs)
	if err != nil {
		return tree.Node{}, fmt.Errorf("back up %s: %w", b.opts.Path, err)
	}
	name := filepath.Base(abs)
	if name == "/" || name == "." {
		name = "rootfs"
	}
	// A root that is a single file has no directory of its own in the cache;
	// it gets an entry under a key no directory path can take.
	rootKey := "\x00root\x00" + abs
	rb := &readBatch{b: b, drop: !b.opts.KeepCache && dropOKPath(abs), dev: fi.dev}
	pn, err := b.saveNode(abs, name, fi, nil, b.cache.dirEntries(rootKey), rb)
	if err == nil {
		err = rb.flush()
	}
	if err != nil {
		return tree.Node{}, err
	}
	if pn == nil {
		return tree.Node{}, fmt.Errorf("back up %s: not a regular file, directory or symlink", b.opts.Path)
	}
	n, err := pn.wait(b)
	if err == nil && pn.stamped {
		if err := b.cache.putDir(rootKey, []fileEntry{pn.cacheEntry(&n)}); err != nil {
			return n, fmt.Errorf("update cache: %w", err)
		}
	}
	return n, err
}

// pendingNode is a tree node whose content or subtree may still be in the pipeline.
type pendingNode struct {
	node tree.Node
	file *pendingFile
	dir  *pendingDir
	// A regular file's cache entry is its finished node and its stamp
	// (cacheEntry); stamped is false for other nodes.
	stamp   fileStamp
	stamped bool
}

// fileStamp is what a regular file's cache entry holds that its node does
// not: the size is the one listed (the node's is what was read).
type fileStamp struct {
	ino, size uint64
	ctime     int64
}

// cacheEntry is the cache entry of p, a regular file whose finished node
// is n.
func (p *pendingNode) cacheEntry(n *tree.Node) fileEntry {
	return fileEntry{Name: n.Name, Ino: p.stamp.ino, Size: p.stamp.size, MTime: n.MTime, CTime: p.stamp.ctime,
		Mode: n.Mode, UID: n.UID, GID: n.GID, Content: n.Content}
}

// pendingFileNode is a regular file's pending node and read in one
// allocation (the 384-byte size class; with a copy of its cache entry, as
// before the entry was made from the node, the 448-byte one).
type pendingFileNode struct {
	node pendingNode
	file pendingFile
}

type pendingFile struct {
	jobs []*chunkJob
	wg   sync.WaitGroup
	err  error // read error (set by the reader before wg completes)
	// one and first hold a file's first chunk job and its place in jobs,
	// so that a small file, one chunk, allocates neither.
	one   chunkJob
	first [1]*chunkJob
}

type pendingDir struct {
	done chan struct{}
	ref  []tree.Ref
	err  error
}

func (p *pendingNode) wait(b *backup) (tree.Node, error) {
	switch {
	case p.file != nil:
		return b.finishFile(p.node, p.file)
	case p.dir != nil:
		<-p.dir.done
		if p.dir.err != nil {
			return p.node, p.dir.err
		}
		p.node.Subtree = p.dir.ref
	}
	return p.node, nil
}

func (b *backup) finishFile(n tree.Node, pf *pendingFile) (tree.Node, error) {
	pf.wg.Wait()
	if pf.err != nil {
		return n, pf.err
	}
	n.Content = make([]tree.Ref, 0, len(pf.jobs))
	n.Size = 0
	for _, j := range pf.jobs {
		if j.err != nil {
			return n, j.err
		}
		n.Content = append(n.Content, j.ref)
		n.Size += j.ref.RawLength
	}
	return n, nil
}

func mode(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// saveNode starts saving one file system object. It returns nil for objects
// that are not stored (devices, sockets, pipes), after recording them. A
// regular file under chunk.MinSize joins rb, which the caller flushes. f is
// the regular file, if the walker opened it; saveNode sees that it is
// closed.
func (b *backup) saveNode(path, name string, fi fileStat, f *sourceFile, old map[string]fileEntry, rb *readBatch) (*pendingNode, error) {
	if err := b.ctx.Err(); err != nil {
		if f != nil {
			f.Close()
		}
		return nil, context.Cause(b.ctx)
	}
	n := tree.Node{Name: name, Mode: mode(fi.mode), MTime: fi.mtime, UID: fi.uid, GID: fi.gid}
	switch {
	case fi.mode.IsRegular():
		n.Type = tree.File
		b.files.Add(1)
		stamp := fileStamp{ino: fi.ino, size: uint64(fi.size), ctime: fi.ctime}
		if o, ok := old[name]; ok && o.Ino == stamp.ino && o.Size == stamp.size && o.MTime == n.MTime && o.CTime == stamp.ctime && b.refsKnown(o.Content) {
			if f != nil {
				f.Close()
			}
			n.Content, n.Size = o.Content, o.Size
			b.bytes.Add(o.Size)
			b.markUsed(o.Content...)
			return &pendingNode{node: n, stamp: stamp, stamped: true}, nil
		}
		// One allocation for the node and its read.
		pfn := &pendingFileNode{}
		pn, pf := &pfn.node, &pfn.file
		pf.wg.Add(1) // the read; the reader releases it
		*pn = pendingNode{node: n, file: pf, stamp: stamp, stamped: true}
		j := readJob{path: path, size: fi.size, pf: pf, f: f, drop: rb.drop && fi.dev == rb.dev}
		if fi.size < chunk.MinSize {
			return pn, rb.add(j)
		}
		select {
		case b.bigReads <- j:
		case <-b.ctx.Done():
			j.close()
			pf.wg.Done()
			return nil, context.Cause(b.ctx)
		}
		return pn, nil
	case fi.mode.IsDir():
		n.Type = tree.Dir
		b.dirs.Add(1)
		pd := &pendingDir{done: make(chan struct{})}
		select {
		case b.walkers <- struct{}{}:
			b.finishers.Add(1)
			go func() {
				defer b.finishers.Done()
				b.saveDir(path, pd)
				<-b.walkers
			}()
		default:
			b.saveDir(path, pd)
		}
		return &pendingNode{node: n, dir: pd}, nil
	case fi.mode&fs.ModeSymlink != 0:
		n.Type = tree.Symlink
		t, err := os.Readlink(path)
		if err != nil {
			return nil, fmt.Errorf("read link %s: %w", path, err)
		}
		n.Target = t
		b.links.Add(1)
		return &pendingNode{node: n}, nil
	default:
		b.mu.Lock()
		b.skipped = append(b.skipped, path)
		b.mu.Unlock()
		return nil, nil
	}
}

// refsKnown reports whether every pack the refs name is known to be stored.
func (b *backup) refsKnown(refs []tree.Ref) bool {
	var last [16]byte
	for i, r := range refs {
		if i > 0 && r.Pack == last {
			continue
		}
		if !b.cache.hasPack(r.Pack) {
			return false
		}
		last = r.Pack
	}
	return true
}

func (b *backup) markUsed(refs ...tree.Ref) {
	b.usedMu.Lock()
	for _, r := range refs {
		b.used[r.Pack] = struct{}{}
	}
	b.usedMu.Unlock()
}

// chunkStream cuts the standard input into chunks with the walker's chunker.
func (b *backup) chunkStream(r io.Reader, what string) (*pendingFile, error) {
	if b.chunker == nil {
		ch, err := chunk.NewChunker(b.mac, r, nil)
		if err != nil {
			return nil, err
		}
		b.chunker = ch
	} else {
		b.chunker.Reset(r)
	}
	pf := &pendingFile{}
	if err := b.chunkInto(b.chunker, pf, what); err != nil {
		pf.wg.Wait()
		return nil, err
	}
	return pf, nil
}

// reader reads regular files handed over by the walker and queues their
// chunks for the workers.
func (b *backup) reader(reads <-chan readJob) {
	defer b.readers.Done()
	for j := range reads {
		j.pf.err = b.readFile(j)
		j.pf.wg.Done()
	}
}

// smallReader reads batches of files under chunk.MinSize (see ReadBatch).
func (b *backup) smallReader() {
	defer b.readers.Done()
	var open []io.ReadCloser
	var u unit
	for batch := range b.reads {
		open = slices.Grow(open[:0], len(batch))[:len(batch)]
		for i, j := range batch {
			open[i] = nil
			if b.ctx.Err() != nil {
				j.close()
				continue
			}
			var f io.ReadCloser = j.f
			if j.f == nil {
				var err error
				if f, err = openFile(j.path); err != nil {
					j.pf.err = fmt.Errorf("read %s: %w", j.path, err)
					continue
				}
			}
			dropBehind(f, j)
			if a, ok := f.(willNeeder); ok {
				a.willNeed(j.size + 1)
			}
			open[i] = f
		}
		// The kernel is reading ahead while the reader waits, if it must,
		// for the budget. Nil once the backup has ended (readOpen fails).
		bb := b.newBatch(batch)
		for i, j := range batch {
			switch f := open[i]; {
			case f != nil:
				j.pf.err = b.readOpen(f, j.path, j.size, j.pf, &u, bb)
				f.Close()
				open[i] = nil
			case j.pf.err == nil:
				j.pf.err = context.Cause(b.ctx)
			}
			j.pf.wg.Done()
		}
		// The jobs' counts are in their files' WaitGroups: a file's read
		// is done before its job reaches a worker, and its wait still
		// waits for the job. An error here is already every job's.
		_ = b.send(&u)
		if bb != nil {
			b.releaseBatch(bb)
		}
	}
}

// dropBehinder is a file that can drop the pages it reads from the page
// cache (see sourceFile.dropBehind).
type dropBehinder interface {
	dropBehind()
}

// dropBehind has the newly opened f of job j drop its pages as it is read,
// if j may (readJob.drop: neither the options nor its file system forbid it).
func dropBehind(f io.Reader, j readJob) {
	if d, ok := f.(dropBehinder); ok && j.drop {
		d.dropBehind()
	}
}

// willNeeder is a file that can be told how much of it will be read.
type willNeeder interface {
	willNeed(n int64)
}

func (b *backup) readFile(j readJob) error {
	if b.ctx.Err() != nil {
		j.close()
		return context.Cause(b.ctx)
	}
	var f io.ReadCloser = j.f
	if j.f == nil {
		var err error
		if f, err = openFile(j.path); err != nil {
			return fmt.Errorf("read %s: %w", j.path, err)
		}
	}
	defer f.Close()
	dropBehind(f, j)
	return b.readOpen(f, j.path, j.size, j.pf, nil, nil)
}

// readOpen reads the open file f, listed with size bytes, and queues its
// chunks into pf. A file under chunk.MinSize, one chunk, joins u if u is not
// nil (the caller sends it), read into bb's next size+1 bytes if bb is not
// nil (newBatch made room; only with u); else every chunk is sent as it is
// cut.
func (b *backup) readOpen(f io.Reader, path string, size int64, pf *pendingFile, u *unit, bb *batchBuf) error {
	if b.ctx.Err() != nil {
		return context.Cause(b.ctx)
	}
	var r io.Reader = f
	if size < chunk.MinSize {
		// A file shorter than the smallest chunk is one chunk whatever the
		// chunker: read it whole, without a scan buffer.
		// One read of a byte more than listed: getting exactly the listed
		// size means the end of the file (a regular file reads short only
		// at its end), so the usual second read that returns EOF is not
		// made; getting less reads on, getting more means it grew.
		var bp *[]byte
		var buf []byte
		if bb != nil {
			end := bb.off + int(size) + 1
			buf = (*bb.bp)[bb.off:end:end]
		} else {
			bp = b.cbuf.get(int(size) + 1)
			buf = *bp
		}
		n, err := f.Read(buf)
		if err == nil && int64(n) < size {
			var m int
			m, err = io.ReadFull(f, buf[n:])
			n += m
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF || (err == nil && n < len(buf)):
			switch {
			case n > 0 && bb != nil:
				bb.off += n
				b.pushBatched(u, buf[:n:n], bb, pf)
				return nil
			case n > 0:
				*bp = buf[:n]
				if u != nil {
					return b.push(u, bp, pf)
				}
				return b.queue(bp, pf)
			}
			b.cbuf.put(bp)
			return nil
		case err != nil:
			b.cbuf.put(bp)
			return fmt.Errorf("read %s: %w", path, err)
		}
		// It grew since it was listed: chunk what was read and the rest
		// (the chunker copies from buf, which is free once it is done).
		// The unit goes first: the chunks below wait on the budget.
		defer b.cbuf.put(bp)
		if u != nil {
			if err := b.send(u); err != nil {
				return err
			}
		}
		r = io.MultiReader(bytes.NewReader(buf), f)
	}
	select {
	case b.scans <- struct{}{}:
		defer func() { <-b.scans }()
	case <-b.ctx.Done():
		return context.Cause(b.ctx)
	}
	bufp := b.rbufs.Get().(*[]byte)
	defer b.rbufs.Put(bufp)
	ch, err := chunk.NewChunker(b.mac, r, *bufp)
	if err != nil {
		return err
	}
	return b.chunkInto(ch, pf, path)
}

// chunkInto reads ch to its end and queues every chunk for the workers,
// recording the jobs in pf in file order. The chunks may still be in flight
// when it returns; pf.wg counts them.
func (b *backup) chunkInto(ch *chunk.Chunker, pf *pendingFile, what string) error {
	for {
		data, err := ch.Next()
		if len(data) > 0 {
			// A copy in a buffer of its size class: a MaxSize buffer per
			// chunk in flight would hold 4 MiB for a 300-byte file.
			bp := b.cbuf.get(len(data))
			copy(*bp, data)
			if qerr := b.queue(bp, pf); qerr != nil {
				return qerr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", what, err)
		}
	}
}

// queue hands one chunk in a buffer of b.cbuf (which the caller no longer
// touches) to the workers, once the read-ahead budget has room for the
// buffer.
func (b *backup) queue(bp *[]byte, pf *pendingFile) error {
	var u unit
	if err := b.push(&u, bp, pf); err != nil {
		return err
	}
	return b.send(&u)
}

// push adds one chunk in a buffer of b.cbuf (which the caller no longer
// touches) to u as a job of pf, once the read-ahead budget has room for the
// buffer. If it has none, u is sent first: the bytes its jobs hold are
// released only by the workers.
func (b *backup) push(u *unit, bp *[]byte, pf *pendingFile) error {
	raw := *bp
	if !b.budget.tryAcquire(cap(raw)) {
		err := b.send(u)
		if err == nil && !b.budget.acquire(b.ctx, cap(raw)) {
			err = context.Cause(b.ctx)
		}
		if err != nil {
			b.cbuf.put(bp)
			return err
		}
	}
	b.newJob(u, pf, raw).buf = bp
	return nil
}

// newJob adds a job of pf for raw to u; the caller sets its buffer (buf or
// batch).
func (b *backup) newJob(u *unit, pf *pendingFile, raw []byte) *chunkJob {
	var j *chunkJob
	if pf.jobs == nil {
		j = &pf.one
		pf.jobs = pf.first[:0]
	} else {
		j = &chunkJob{}
	}
	*j = chunkJob{raw: raw, wg: &pf.wg}
	pf.jobs = append(pf.jobs, j)
	pf.wg.Add(1)
	b.readBytes.Add(uint64(len(raw)))
	b.bytes.Add(uint64(len(raw)))
	if u.tail == nil {
		u.head = j
	} else {
		u.tail.next = j
	}
	u.tail = j
	return j
}

// pushBatched adds one chunk, raw, a slice of bb (whose budget is taken), to
// u as a job of pf; u must not be nil. Unlike push it never waits.
func (b *backup) pushBatched(u *unit, raw []byte, bb *batchBuf, pf *pendingFile) {
	bb.refs.Add(1)
	b.newJob(u, pf, raw).batch = bb
}

// send hands u's jobs, if any, to the workers, and empties u. If the backup
// ends first, the jobs fail with its cause.
func (b *backup) send(u *unit) error {
	head := u.head
	if head == nil {
		return nil
	}
	u.head, u.tail = nil, nil
	select {
	case b.jobs <- head:
		return nil
	case <-b.ctx.Done():
		err := context.Cause(b.ctx)
		for j := head; j != nil; {
			next := j.next
			if n := b.release(j.raw, j.buf, j.batch); n > 0 {
				b.budget.release(n)
			}
			j.raw, j.buf, j.batch, j.next = nil, nil, nil, nil
			j.err = err
			j.wg.Done()
			j = next
		}
		return err
	}
}

func (b *backup) worker() {
	defer b.workers.Done()
	f := &frame{}
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		var j *chunkJob
		var ok bool
		if len(f.members) == 0 {
			j, ok = <-b.jobs
		} else {
			select {
			case j, ok = <-b.jobs:
			default:
				// Nothing queued: give the readers a moment, then close the
				// frame so the files in it are not left waiting.
				idle.Reset(FrameWait)
				select {
				case j, ok = <-b.jobs:
					idle.Stop()
				case <-idle.C:
					b.flushFrame(f)
					continue
				}
			}
		}
		if !ok {
			b.flushFrame(f)
			return
		}
		held := 0
		for j != nil {
			next := j.next
			held += b.take(j, f)
			j = next
		}
		if held > 0 {
			b.budget.release(held)
		}
	}
}

// take stores j's chunk (or fails it if the backup has ended), gives back
// its buffer and returns the budget it held (see release).
func (b *backup) take(j *chunkJob, f *frame) int {
	// j is not touched once handed on (completed, or waiting on a
	// duplicate): its file's finisher reads it.
	raw, bp, bb := j.raw, j.buf, j.batch
	j.raw, j.buf, j.batch, j.next = nil, nil, nil, nil
	if b.ctx.Err() != nil {
		b.complete(j, tree.Ref{}, context.Cause(b.ctx))
	} else {
		b.storeData(j, b.hasher.Sum(raw), raw, f)
	}
	// storeData copied raw into the frame or compressed it.
	return b.release(raw, bp, bb)
}

// complete hands a chunk job its ref.
func (b *backup) complete(j *chunkJob, ref tree.Ref, err error) {
	if err == nil {
		b.markUsed(ref)
	}
	j.ref, j.err = ref, err
	j.wg.Done()
}

// finish records where a blob this backup stored went, and completes the
// jobs waiting for it.
func (b *backup) finish(st *blobState, ref tree.Ref, err error) {
	b.mu.Lock()
	st.setFinished(ref, err)
	j := st.job
	st.job = nil
	var ws []*chunkJob
	var done chan struct{}
	if w := st.wait; w != nil {
		ws, done = w.waiters, w.done
		w.waiters = nil
	}
	b.mu.Unlock()
	if done != nil {
		close(done)
	}
	if j != nil {
		b.complete(j, ref, err)
	}
	for _, w := range ws {
		b.complete(w, ref, err)
	}
}

// finishFrame finishes the blobs of one frame, which refs (unless err) place
// in one pack: under one lock, and marking the pack used once.
func (b *backup) finishFrame(states []*blobState, refs []tree.Ref, err error) {
	var ref tree.Ref
	b.mu.Lock()
	for i, st := range states {
		if err == nil {
			ref = refs[i]
		}
		st.setFinished(ref, err)
	}
	b.mu.Unlock()
	if err == nil && len(refs) > 0 {
		b.markUsed(refs[0])
	}
	for i, st := range states {
		// Nothing changes st.job or st.wait once st is finished.
		if err == nil {
			ref = refs[i]
		}
		if j := st.job; j != nil {
			st.job = nil
			j.ref, j.err = ref, err
			j.wg.Done()
		}
		if w := st.wait; w != nil {
			if w.done != nil {
				close(w.done)
			}
			for _, j := range w.waiters {
				b.complete(j, ref, err)
			}
			w.waiters = nil
		}
	}
}

// claim returns the state of blob id if this backup is already storing it,
// or makes one the caller must finish (owner true). A blob the cache knows
// is reported by known and ref.
//
// The cache is asked first, without the lock: a blob this backup stores
// enters the cache's filter only when recorded, so for one still in flight
// the filter almost always answers no at once; then one look-up and one
// insert in the in-flight map under the lock, instead of a look-up on
// either side of the cache's.
//
// A state that claim makes holds j, if not nil, as the job to complete when
// the blob is finished: the job joins it in the same section.
func (b *backup) claim(id chunk.ID, j *chunkJob) (st *blobState, owner bool, ref tree.Ref, known bool) {
	if ref, ok := b.cache.chunk(id); ok {
		return nil, false, ref, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if st, ok := b.inflight[id]; ok {
		return st, false, tree.Ref{}, false
	}
	st = &blobState{job: j}
	b.inflight[id] = st
	return st, true, tree.Ref{}, false
}

// storeData deduplicates one data chunk and, if new, compresses and packs
// it: alone if large, else in the worker's frame f. The job completes when
// the blob has its place in a pack, perhaps after storeData returns; raw is
// not kept.
func (b *backup) storeData(j *chunkJob, id chunk.ID, raw []byte, f *frame) {
	st, owner, ref, known := b.claim(id, j)
	switch {
	case known:
		b.complete(j, ref, nil)
		return
	case owner: // j joined st in the claim
		b.packData(st, id, raw, f)
		return
	}
	b.mu.Lock()
	if !st.finished {
		w := st.waits()
		w.waiters = append(w.waiters, j)
		b.mu.Unlock()
		return
	}
	ref, err := st.ref, st.failure()
	b.mu.Unlock()
	b.complete(j, ref, err)
}

func (b *backup) packData(st *blobState, id chunk.ID, raw []byte, f *frame) {
	b.newBytes.Add(uint64(len(raw)))
	if len(raw) >= SmallBlob {
		f.out = pack.Compress(f.out[:0], raw)
		ref, err := b.data.add(id, f.out, len(raw))
		b.finish(st, ref, err)
		return
	}
	if f.raw == nil {
		f.raw = make([]byte, 0, FrameTarget+SmallBlob)
	}
	f.raw = append(f.raw, raw...)
	f.members = append(f.members, pack.Member{Type: pack.BlobData, ID: id, RawLength: len(raw)})
	f.states = append(f.states, st)
	if len(f.raw) >= FrameTarget {
		b.flushFrame(f)
	}
}

// flushFrame compresses and packs a worker's open frame, if any.
func (b *backup) flushFrame(f *frame) {
	if len(f.members) == 0 {
		return
	}
	var refs []tree.Ref
	err := context.Cause(b.ctx)
	if err == nil {
		f.out = pack.Compress(f.out[:0], f.raw)
		refs, err = b.data.addFrame(f.out, f.members)
	}
	b.finishFrame(f.states, refs, err)
	clear(f.states)
	f.raw, f.members, f.states = f.raw[:0], f.members[:0], f.states[:0]
}

// storeBlob deduplicates and, if new, compresses and packs one tree blob,
// and returns where it is.
func (b *backup) storeBlob(t pack.BlobType, id chunk.ID, raw []byte) (tree.Ref, error) {
	st, owner, ref, known := b.claim(id, nil)
	if known {
		b.markUsed(ref)
		return ref, nil
	}
	if owner {
		p := b.data
		if t == pack.BlobTree {
			p = b.trees
		}
		b.newBytes.Add(uint64(len(raw)))
		// The packer copies the stored form: its buffer is reused (a fresh
		// one per blob was 56 MB of garbage in a 1 GB backup).
		bp, _ := b.tbufs.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		*bp = pack.Compress((*bp)[:0], raw)
		ref, err := p.add(id, *bp, len(raw))
		b.tbufs.Put(bp)
		b.finish(st, ref, err)
	}
	b.mu.Lock()
	if !st.finished {
		w := st.waits()
		if w.done == nil {
			w.done = make(chan struct{})
		}
		done := w.done
		b.mu.Unlock()
		<-done
		b.mu.Lock()
	}
	ref, err := st.ref, st.failure()
	b.mu.Unlock()
	if err == nil {
		b.markUsed(ref)
	}
	return ref, err
}

// saveDir starts saving a directory into pd: its children are queued now,
// and a finisher goroutine builds its tree once they are placed and then
// closes pd.done. A failure to list it fails the backup (and pd).
func (b *backup) saveDir(path string, pd *pendingDir) {
	if err := b.listDir(path, pd); err != nil {
		pd.err = err
		b.fail(err)
		close(pd.done)
	}
}

func (b *backup) listDir(path string, pd *pendingDir) (rerr error) {
	d, err := openDir(path)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", path, err)
	}
	closed := false
	closeDir := func() error {
		if closed {
			return nil
		}
		closed = true
		if err := d.Close(); err != nil {
			return fmt.Errorf("read directory %s: %w", path, err)
		}
		return nil
	}
	defer closeDir()
	old := b.cache.dirEntries(path)
	// Entries are stated before any is saved; regular files the cache does
	// not know (all of a first backup's) are not: the walker opens them
	// below, relative to the directory, and stats them through the
	// descriptor (openEntry). A file the cache knows is stated without
	// being opened, so that an unchanged one is not opened at all.
	ents, err := d.statAll(func(name string) bool {
		_, known := old[name]
		return openOnListing && !known
	})
	if err != nil {
		return err
	}
	// Files first, then subdirectories, so that the directory's small files
	// go to the readers in full batches, not cut by each subdirectory the
	// walker descends into. The directory is closed before the walk
	// descends: a deep tree holds no descriptor per level.
	nodes := make([]*pendingNode, len(ents))
	rb := &readBatch{b: b, drop: !b.opts.KeepCache && d.drop, dev: d.dev}
	for i := range ents {
		if !ents[i].st.mode.IsDir() {
			rb.left++
		}
	}
	defer func() {
		if rerr != nil {
			rb.abandon(rerr)
		}
	}()
	for _, dirs := range []bool{false, true} {
		if dirs {
			if err := closeDir(); err != nil {
				return err
			}
		}
		for i := range ents {
			e := &ents[i]
			if e.st.mode.IsDir() != dirs {
				continue
			}
			var f *sourceFile
			if e.open {
				var err error
				f, e.st, err = d.openEntry(e.name)
				e.open = false
				if errors.Is(err, fs.ErrNotExist) {
					continue // removed since the listing
				}
				if err != nil {
					return fmt.Errorf("stat %s: %w", joinPath(path, e.name), err)
				}
				if e.st.mode.IsDir() {
					continue // a directory now: the second pass saves it
				}
			}
			var p string
			if f != nil {
				p = f.path // openEntry joined it
			} else {
				p = joinPath(path, e.name)
			}
			pn, err := b.saveNode(p, e.name, e.st, f, old, rb)
			if err != nil {
				return err
			}
			nodes[i] = pn
		}
		if err := rb.flush(); err != nil {
			return err
		}
	}
	children := slices.DeleteFunc(nodes, func(pn *pendingNode) bool { return pn == nil })
	b.finishers.Add(1)
	go func() {
		defer b.finishers.Done()
		defer close(pd.done)
		t := &tree.Tree{Nodes: make([]tree.Node, 0, len(children))}
		for _, c := range children {
			// Wait for every child even after a failure, so nothing is left
			// running when the backup returns.
			n, err := c.wait(b)
			if err != nil && pd.err == nil {
				pd.err = err
				b.fail(err)
			}
			t.Nodes = append(t.Nodes, n)
		}
		if pd.err != nil || b.ctx.Err() != nil {
			if pd.err == nil {
				pd.err = context.Cause(b.ctx)
			}
			return
		}
		files := 0
		for _, c := range children {
			if c.stamped {
				files++
			}
		}
		entries := make([]fileEntry, 0, files)
		for i, c := range children {
			if c.stamped {
				entries = append(entries, c.cacheEntry(&t.Nodes[i]))
			}
		}
		if err := b.cache.putDir(path, entries); err != nil {
			pd.err = fmt.Errorf("update cache: %w", err)
			b.fail(pd.err)
			return
		}
		pd.ref, pd.err = b.saveTree(t)
		if pd.err != nil {
			b.fail(pd.err)
		}
	}()
	return nil
}

// saveTree stores a tree's encoding as tree blobs, cut by the keyed chunker
// so that a large directory that changes a little still deduplicates, and
// returns the pieces in order.
func (b *backup) saveTree(t *tree.Tree) ([]tree.Ref, error) {
	raw, err := t.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode tree: %w", err)
	}
	if len(raw) < chunk.MinSize {
		// The chunker would not cut it: one piece, no scan buffer.
		ref, err := b.storeBlob(pack.BlobTree, b.hasher.Sum(raw), raw)
		if err != nil {
			return nil, err
		}
		return []tree.Ref{ref}, nil
	}
	buf := b.cbufs.Get().(*[]byte)
	defer b.cbufs.Put(buf)
	ch, err := chunk.NewChunker(b.mac, bytes.NewReader(raw), *buf)
	if err != nil {
		return nil, err
	}
	var refs []tree.Ref
	for {
		piece, err := ch.Next()
		if len(piece) > 0 {
			ref, err := b.storeBlob(pack.BlobTree, b.hasher.Sum(piece), piece)
			if err != nil {
				return nil, err
			}
			refs = append(refs, ref)
		}
		if err == io.EOF {
			return refs, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// packer fills one pack at a time with blobs of one type.
type packer struct {
	b    *backup
	typ  pack.BlobType
	mu   sync.Mutex
	bld  *pack.Builder
	id   [16]byte
	last int // blobs in the pack taken last: the next one's index is sized for them
}

func (p *packer) add(id chunk.ID, stored []byte, rawLen int) (tree.Ref, error) {
	refs, err := p.addFrame(stored, []pack.Member{{Type: p.typ, ID: id, RawLength: rawLen}})
	if len(refs) == 0 {
		return tree.Ref{}, err
	}
	return refs[0], err
}

// addFrame appends one frame of blobs (stored is its stored form) and
// returns their refs, in order.
func (p *packer) addFrame(stored []byte, members []pack.Member) ([]tree.Ref, error) {
	target := PackTarget
	if p.typ == pack.BlobTree {
		target = TreePackTarget
	}
	p.mu.Lock()
	var jobs []*packJob
	if p.bld != nil && p.bld.Count() > 0 && p.bld.SizeWith(len(stored), members) > target {
		jobs = append(jobs, p.take()) // full: the frame starts the next pack
	}
	if p.bld == nil {
		if p.typ == pack.BlobData {
			var buf []byte
			select {
			case buf = <-p.b.packBufs:
			case <-p.b.ctx.Done():
				p.mu.Unlock()
				return nil, context.Cause(p.b.ctx)
			}
			if buf == nil {
				p.bld = pack.NewBuilderSize(packBufSize)
			} else {
				p.bld = pack.NewBuilderBuffer(buf)
			}
		} else {
			p.bld = pack.NewBuilder()
		}
		if _, err := rand.Read(p.id[:]); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		p.bld.Grow(p.last + p.last/8)
	}
	es := p.bld.AddFrame(stored, members)
	refs := make([]tree.Ref, len(es))
	for i, e := range es {
		refs[i] = tree.Ref{ID: e.ID, Pack: p.id, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength}
	}
	if p.bld.Size() >= target || p.bld.Count() >= PackMaxBlobs {
		jobs = append(jobs, p.take())
	}
	p.mu.Unlock()
	for _, job := range jobs {
		select {
		case p.b.uploads <- job:
		case <-p.b.ctx.Done():
			return refs, context.Cause(p.b.ctx)
		}
	}
	return refs, nil
}

func (p *packer) take() *packJob {
	entries := p.bld.Entries()
	p.last = len(entries)
	job := &packJob{id: p.id, typ: p.typ, plain: p.bld.Finish(), entries: entries}
	p.bld = nil
	return job
}

func (p *packer) flush() {
	p.mu.Lock()
	var job *packJob
	if p.bld != nil && p.bld.Count() > 0 {
		job = p.take()
	}
	p.mu.Unlock()
	if job != nil && p.b.ctx.Err() == nil {
		p.b.uploads <- job
	}
}

// upbufs are one uploader's buffers, reused from pack to pack: allocating
// ~40 MiB per pack made the runtime zero, fault in and collect ~2.5 GB per
// GB of input. The pack is sealed straight into the shards' buffer
// (erasure.Slot), which saves a sealed copy of 16 MiB per uploader.
type upbufs struct {
	shards []byte
}

func (b *backup) uploader() {
	defer b.upwg.Done()
	var bufs upbufs
	for job := range b.uploads {
		if b.ctx.Err() != nil {
			continue
		}
		if err := b.upload(job, &bufs); err != nil {
			b.fail(err)
		}
	}
}

func (b *backup) upload(job *packJob, bufs *upbufs) error {
	size := len(job.plain) + seal.Overhead(len(job.plain))
	if bufs.shards == nil {
		// Sized once for the largest pack (a data pack never outgrows
		// packBufSize, a tree pack stays well under it): grown to each
		// pack larger than the last, it was allocated three times over.
		bufs.shards, _ = erasure.Slot(nil, b.params, max(size, packBufSize+seal.Overhead(packBufSize)))
	}
	full, slot := erasure.Slot(bufs.shards, b.params, size)
	bufs.shards = full
	sealed, err := seal.AppendSeal(slot[:0], b.pub, PackAD(b.ds, job.id), job.plain)
	if err != nil {
		return fmt.Errorf("seal pack: %w", err)
	}
	if len(sealed) != size || &sealed[0] != &slot[0] {
		return fmt.Errorf("seal pack: sealed %d bytes outside its slot of %d", len(sealed), size)
	}
	if job.typ == pack.BlobData {
		b.packBufs <- job.plain[:0] // the packer fills it next
	}
	job.plain = nil
	shards, err := erasure.EncodeInto(full, b.params, job.id, sealed)
	if err != nil {
		return fmt.Errorf("erasure-code pack: %w", err)
	}
	// Each host's store hashes its shard once, all in parallel.
	addrs, err := hosts.PutSummed(b.ctx, b.hosts, shards, shardstore.KindShard)
	if err != nil {
		return err
	}
	ref := snapshot.PackRef{ID: job.id, Size: uint64(len(sealed)), ShardSize: uint64(len(shards[0])), Shards: make([][32]byte, len(addrs))}
	for i, a := range addrs {
		ref.Shards[i] = a
	}
	b.mu.Lock()
	b.newPacks[job.id] = ref
	b.mu.Unlock()
	if err := b.recordPack(&ref, job.entries, false); err != nil {
		return err
	}
	b.stored.Add(uint64(len(sealed)))
	for _, s := range shards {
		b.uploaded.Add(uint64(len(s)))
	}
	b.packsUp.Add(1)
	return nil
}

// CacheBatch is how many blobs of stored packs wait to be recorded in the
// cache together (at least; packs are recorded whole): each record writes
// one chunk index run and merges it with the newest runs of no more
// entries (runs.go), so a batch of B blobs costs about log₂(total/B)
// sequential rewrites of itself. Until recorded, the blobs stay in the
// backup's in-flight map, ~170 bytes each: 64 Ki of them hold ~11 MB of
// the live heap (128 Ki held 21 MB, for one merge level fewer).
const CacheBatch = 64 << 10

// recordPack queues a pack stored on every host for the cache, and records
// the queue when it is large enough or when all is true. Its blobs are
// deduplicated through the in-flight map until then.
func (b *backup) recordPack(ref *snapshot.PackRef, entries []pack.Entry, all bool) error {
	b.recMu.Lock()
	defer b.recMu.Unlock()
	if ref != nil {
		b.unrecorded = append(b.unrecorded, durablePack{ref: ref, entries: entries})
		b.unrecordedBlobs += len(entries)
	}
	if len(b.unrecorded) == 0 || (!all && b.unrecordedBlobs < CacheBatch) {
		return nil
	}
	if err := b.cache.addPacks(b.unrecorded); err != nil {
		return fmt.Errorf("update cache: %w", err)
	}
	// A few thousand at a time: the workers' claims wait on this lock,
	// and a batch is 64 Ki blobs or more.
	for _, p := range b.unrecorded {
		for es := range slices.Chunk(p.entries, 4096) {
			b.mu.Lock()
			for _, e := range es {
				delete(b.inflight, e.ID)
			}
			b.mu.Unlock()
		}
	}
	b.unrecorded, b.unrecordedBlobs = nil, 0
	return nil
}

// retainer is a host that keeps objects until a time the guest sets (a
// host node; enforced where its store has S3 Object Lock).
type retainer interface {
	Retain(ctx context.Context, objs []transport.Object, until time.Time) error
}

// extendRetention asks every host node to keep the shards of every pack the
// snapshot references until RetainUntil(snapshot time, d), before the
// envelope is published: dedup must never let data a live snapshot needs
// expire. New packs got a retain-until with their PUT, from their upload
// time; they are included so that a backup that crosses a UTC midnight
// does not leave them a day short. A shard a host lost or damaged does not
// stop the backup (the other k shards hold; check reports it).
func (b *backup) extendRetention(ctx context.Context, refs []snapshot.PackRef, d time.Duration, now time.Time) error {
	if d <= 0 {
		return nil
	}
	until := transport.RetainUntil(now, d)
	for i, x := range b.hosts {
		r, ok := x.Store.(retainer)
		if !ok {
			continue
		}
		var objs []transport.Object
		for _, p := range refs {
			objs = append(objs, transport.Object{Kind: shardstore.KindShard, ID: shardstore.ID(p.Shards[i])})
		}
		err := r.Retain(ctx, objs, until)
		if err != nil && !errors.Is(err, transport.ErrNoRetention) && !errors.Is(err, shardstore.ErrNotFound) {
			return fmt.Errorf("host %s: %w", x.Name, err)
		}
	}
	return nil
}

// packRefs lists every pack the snapshot references, sorted by ID.
func (b *backup) packRefs() ([]snapshot.PackRef, error) {
	out := make([]snapshot.PackRef, 0, len(b.used))
	for id := range b.used {
		if r, ok := b.newPacks[id]; ok {
			out = append(out, r)
			continue
		}
		r, err := b.cache.packRef(id)
		if err != nil {
			return nil, fmt.Errorf("pack %x: %w", id, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, c snapshot.PackRef) int {
		for i := range a.ID {
			if a.ID[i] != c.ID[i] {
				return int(a.ID[i]) - int(c.ID[i])
			}
		}
		return 0
	})
	return out, nil
}

// budget is a byte semaphore. A request larger than the whole budget is
// granted when nothing else is held, so no chunk can wait forever.
type budget struct {
	mu   sync.Mutex
	cond *sync.Cond
	max  int
	used int
}

func newBudget(max int) *budget {
	b := &budget{max: max}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// acquire waits until n bytes fit; it returns false if ctx ends first.
func (b *budget) acquire(ctx context.Context, n int) bool {
	b.mu.Lock()
	if b.used == 0 || b.used+n <= b.max {
		// Room now: no need to watch ctx (registering a watcher per chunk
		// allocated and contended on the context's lock).
		b.used += n
		b.mu.Unlock()
		return ctx.Err() == nil || b.undo(n)
	}
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.max {
		if ctx.Err() != nil {
			return false
		}
		b.cond.Wait()
	}
	b.used += n
	return true
}

// tryAcquire takes n bytes if they fit now (or nothing else is held).
func (b *budget) tryAcquire(n int) bool {
	b.mu.Lock()
	ok := b.used == 0 || b.used+n <= b.max
	if ok {
		b.used += n
	}
	b.mu.Unlock()
	return ok
}

// undo gives back n bytes just taken and reports false.
func (b *budget) undo(n int) bool {
	b.release(n)
	return false
}

func (b *budget) release(n int) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}
