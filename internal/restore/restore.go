// Package restore rebuilds a snapshot from any k hosts and a threshold of
// custodians' shares, with HOME gone. It trusts only the dataset identity the
// shares carry: envelopes must be signed by the agent key named there, every
// shard must match the address the agent signed, every blob its keyed ID.
//
// The target appears only when the restore is complete: files are written
// under a temporary directory inside the target and renamed into place at
// the end, so a failed restore never leaves a partial tree looking finished.
package restore

import (
	"context"
	"crypto/hpke"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/embassy-project/embassy/internal/agent"
	"github.com/embassy-project/embassy/internal/catalog"
	"github.com/embassy-project/embassy/internal/chunk"
	"github.com/embassy-project/embassy/internal/custodian"
	"github.com/embassy-project/embassy/internal/erasure"
	"github.com/embassy-project/embassy/internal/guest"
	"github.com/embassy-project/embassy/internal/hosts"
	"github.com/embassy-project/embassy/internal/pack"
	"github.com/embassy-project/embassy/internal/seal"
	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/share"
	"github.com/embassy-project/embassy/internal/snapshot"
	"github.com/embassy-project/embassy/internal/tree"
	"github.com/embassy-project/embassy/internal/wire"
)

// ShareFile is one share file's name (for messages) and bytes.
type ShareFile struct {
	Name string
	Data []byte
}

// Options configures a restore.
type Options struct {
	Hosts      []*hosts.Host
	Shares     []ShareFile
	Identities []*custodian.Identity
	// Opened are shares already opened, e.g. released to an activated host
	// (share.OpenRelease); used instead of Shares and Identities when set.
	Opened   []*share.Share
	Dataset  string
	Snapshot string // "latest", a sequence number or an envelope hash prefix
	Target   string // directory to restore into; the snapshot's root appears inside it
	Warn     func(string)
	Progress func(files, bytes uint64)
}

// Result describes a finished restore.
type Result struct {
	Dataset     string   `json:"dataset"`
	Fingerprint string   `json:"dataset_fingerprint"`
	Seq         uint64   `json:"seq"`
	Envelope    string   `json:"envelope"`
	Path        string   `json:"path"`
	Files       uint64   `json:"files"`
	Dirs        uint64   `json:"dirs"`
	Symlinks    uint64   `json:"symlinks"`
	Bytes       uint64   `json:"bytes"`
	Packs       int      `json:"packs"`        // in the snapshot
	PackFetches uint64   `json:"pack_fetches"` // packs fetched and opened: more than Packs when one left the cache and was needed again
	Warnings    []string `json:"warnings,omitempty"`
}

// Unlock opens and combines share files for one dataset.
func Unlock(shares []ShareFile, ids []*custodian.Identity, dataset string) (*guest.Dataset, *guest.Secret, error) {
	if len(shares) == 0 {
		return nil, nil, errors.New("no --share files given")
	}
	if len(ids) == 0 {
		return nil, nil, errors.New("no --identity files given: each share opens only with its custodian's identity")
	}
	var opened []*share.Share
	for _, f := range shares {
		s, err := share.Open(f.Data, ids)
		if err != nil {
			return nil, nil, fmt.Errorf("share file %s: %w", f.Name, err)
		}
		if dataset != "" && s.Dataset.Name != dataset {
			return nil, nil, fmt.Errorf("share file %s is for dataset %q, not %q", f.Name, s.Dataset.Name, dataset)
		}
		opened = append(opened, s)
	}
	ds, secret, err := share.Combine(opened)
	if err != nil {
		return nil, nil, err
	}
	return ds, secret, nil
}

// Run restores one snapshot.
func Run(ctx context.Context, o Options) (*Result, error) {
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	var ds *guest.Dataset
	var secret *guest.Secret
	var err error
	if len(o.Opened) > 0 {
		ds, secret, err = share.Combine(o.Opened)
		if err == nil && o.Dataset != "" && ds.Name != o.Dataset {
			err = fmt.Errorf("the shares are for dataset %q, not %q", ds.Name, o.Dataset)
		}
	} else {
		ds, secret, err = Unlock(o.Shares, o.Identities, o.Dataset)
	}
	if err != nil {
		return nil, err
	}
	res := &Result{Dataset: ds.Name, Fingerprint: ds.Fingerprint()}
	view := catalog.Assess(ds, catalog.Read(ctx, o.Hosts))
	for _, p := range view.Problems {
		res.Warnings = append(res.Warnings, p.Message)
		warn(p.Message)
	}
	snap, err := view.Find(o.Snapshot)
	if err != nil {
		return res, err
	}
	env := snap.Env
	res.Seq, res.Envelope = env.Seq, fmt.Sprintf("%x", snap.Hash)
	pl, err := hosts.Place(env.Hosts, o.Hosts)
	if err != nil {
		return res, err
	}
	recBytes, err := seal.Open(secret.KEM, agent.RecordAD(ds, env.Seq), env.Record)
	if err != nil {
		return res, fmt.Errorf("open snapshot record: %w", err)
	}
	rec, err := snapshot.ParseRecord(recBytes)
	if err != nil {
		return res, fmt.Errorf("open snapshot record: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r := &restorer{
		ctx: ctx, cancel: cancel, ds: ds, kem: secret.KEM, hasher: chunk.NewHasher(chunk.Key(secret.MACKey)),
		params: erasure.Params{K: int(env.K), N: int(env.N)}, pl: pl,
		packs: map[[16]byte]snapshot.PackRef{}, cache: newPackCache(4 + Workers), trees: newPackCache(TreePacks), warn: warn, progress: o.Progress,
		root: os.Geteuid() == 0,
	}
	for _, p := range env.Packs {
		r.packs[p.ID] = p
	}
	rootTree, err := r.loadTree(rec.Root)
	if err != nil {
		return res, err
	}
	if len(rootTree.Nodes) != 1 {
		return res, wire.Corruptf("root tree of snapshot %d has %d entries, want 1", env.Seq, len(rootTree.Nodes))
	}
	rootNode := rootTree.Nodes[0]
	if err := os.MkdirAll(o.Target, 0o755); err != nil {
		return res, fmt.Errorf("create target: %w", err)
	}
	final := filepath.Join(o.Target, rootNode.Name)
	if _, err := os.Lstat(final); err == nil {
		return res, fmt.Errorf("%s exists already: restore never overwrites; choose another --target", final)
	}
	tmp, err := os.MkdirTemp(o.Target, ".embassy-restore-")
	if err != nil {
		return res, fmt.Errorf("create target: %w", err)
	}
	defer os.RemoveAll(tmp)
	if r.created, err = probeCreation(tmp); err != nil {
		return res, fmt.Errorf("create target: %w", err)
	}
	stopFlush := flushEvery(tmp, FlushInterval, syncFS)
	err = r.restoreTree(filepath.Join(tmp, rootNode.Name), &rootNode)
	stopFlush()
	if err != nil {
		return res, err
	}
	if err := syncFS(tmp); err != nil {
		return res, fmt.Errorf("sync target: %w", err)
	}
	if err := os.Rename(filepath.Join(tmp, rootNode.Name), final); err != nil {
		return res, fmt.Errorf("move restored tree into place: %w", err)
	}
	res.Path = final
	res.Files, res.Dirs, res.Symlinks, res.Bytes = r.files.Load(), r.dirs.Load(), r.links.Load(), r.bytes.Load()
	res.Packs, res.PackFetches = len(env.Packs), r.fetches.Load()
	return res, nil
}

// FlushInterval is how often a restore has the file system write back what
// it has written so far, while it goes on: the syncfs that makes the tree
// durable before it is moved into place then has little left to do. On
// the benchmark machine (24 GB of memory, so the kernel's own writeback
// does not start before 2.4 GB are dirty) the final syncfs of a 1 GB
// restore otherwise took about 2.8 s, most of it with one CPU idle.
const FlushInterval = time.Second

// flushEvery calls sync (syncFS) on dir every interval until the returned
// function is called, which waits for a call under way. Errors are left to
// the final syncfs, which reports them.
func flushEvery(dir string, interval time.Duration, sync func(string) error) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sync(dir)
			}
		}
	}()
	return func() { close(stop); <-done }
}

type restorer struct {
	ctx      context.Context
	cancel   context.CancelCauseFunc
	ds       *guest.Dataset
	kem      hpke.PrivateKey
	hasher   *chunk.Hasher
	params   erasure.Params
	pl       *hosts.Placement
	packs    map[[16]byte]snapshot.PackRef
	cache    *packCache // packs of file data
	trees    *packCache // packs of trees, which the walkers need
	warnMu   sync.Mutex
	warn     func(string)
	warned   map[string]bool
	progress func(files, bytes uint64)
	root     bool
	created  creation // what a new file in the restore's directories gets

	queue   *jobQueue
	workers sync.WaitGroup
	walkers chan struct{}  // slots for subtrees walked by goroutines of their own
	walking sync.WaitGroup // those goroutines
	dirMu   sync.Mutex
	dirMeta []dirJob // directories in creation order; metadata applied in reverse

	orderMu  sync.Mutex
	order    map[[16]byte]uint32 // packs numbered in the order the walk first needed them
	orderIDs [][16]byte          // the packs by number
	// prefetched is one more than the highest pack number prefetched.
	prefetched  atomic.Uint32
	prefetching sync.WaitGroup

	files, dirs, links, bytes atomic.Uint64
	fetches                   atomic.Uint64
}

type dirJob struct {
	path string
	node tree.Node
}

// Workers is the number of files restored at once: two per CPU, as file
// creation waits on the file system as much as on the CPU.
var Workers = 2 * min(runtime.NumCPU(), runtime.GOMAXPROCS(0))

// TreePacks is how many packs of trees restore keeps open, beside the packs
// of file data: the walkers load trees all along the restore, ahead of the
// workers, and in a cache shared with the file data's packs the one would
// push out the other. Tree packs close at 4 MiB.
const TreePacks = 4

// pack returns an opened pack holding blobs of type t, fetching it if needed.
func (r *restorer) pack(id [16]byte, t pack.BlobType) (*openPack, error) {
	c := r.cache
	if t == pack.BlobTree {
		c = r.trees
	}
	return c.get(id, func() (*openPack, error) { return r.fetchPack(id) })
}

// openPack is a pack's plaintext, its parsed index and its most recently
// decompressed frames of several blobs.
type openPack struct {
	plain   []byte
	entries []pack.Entry

	mu     sync.Mutex
	frames map[uint64][]byte // by offset
	order  []uint64          // offsets in frames, oldest first
}

// maxFrames is how many decompressed frames of small blobs each cached pack
// keeps (frames are at most ~128 KiB). Files are restored in about the order
// of their blobs in the packs, so neighbours share frames.
const maxFrames = 16

// frame returns the raw bytes of the frame holding e.
func (p *openPack) frame(e pack.Entry) ([]byte, error) {
	alone := e.Skip == 0 && e.RawLength == e.FrameLength
	if !alone {
		p.mu.Lock()
		f, ok := p.frames[e.Offset]
		p.mu.Unlock()
		if ok {
			return f, nil
		}
	}
	stored, err := pack.Blob(p.plain, e)
	if err != nil {
		return nil, err
	}
	f, err := pack.Decompress(nil, stored, int(e.FrameLength))
	if err != nil || alone {
		return f, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.frames[e.Offset]; !ok {
		if len(p.order) >= maxFrames {
			delete(p.frames, p.order[0])
			p.order = p.order[1:]
		}
		p.frames[e.Offset] = f
		p.order = append(p.order, e.Offset)
	}
	return f, nil
}

func (r *restorer) fetchPack(id [16]byte) (*openPack, error) {
	r.fetches.Add(1)
	ref, ok := r.packs[id]
	if !ok {
		return nil, wire.Corruptf("a tree refers to pack %x, which the snapshot envelope does not list", id)
	}
	addrs := make([]shardstore.ID, len(ref.Shards))
	for i, a := range ref.Shards {
		addrs[i] = shardstore.ID(a)
	}
	sealed, problems, err := hosts.GetPack(r.ctx, r.pl, r.params, addrs)
	for _, p := range problems {
		msg := p.String()
		r.warnMu.Lock()
		if r.warned == nil {
			r.warned = map[string]bool{}
		}
		if !r.warned[msg] {
			r.warned[msg] = true
			r.warn(msg)
		}
		r.warnMu.Unlock()
	}
	if err != nil {
		return nil, fmt.Errorf("pack %x: %w", id, err)
	}
	plain, err := seal.Open(r.kem, agent.PackAD(r.ds, id), sealed)
	if err != nil {
		return nil, fmt.Errorf("open pack %x: %w", id, err)
	}
	entries, err := pack.ParseIndex(plain)
	if err != nil {
		return nil, fmt.Errorf("open pack %x: %w", id, err)
	}
	return &openPack{plain: plain, entries: entries, frames: map[uint64][]byte{}}, nil
}

// blob returns a blob's plaintext, verified against its keyed ID. The pack's
// index says where in the frame at ref.Offset the blob lies.
func (r *restorer) blob(ref tree.Ref, t pack.BlobType) ([]byte, error) {
	p, err := r.pack(ref.Pack, t)
	if err != nil {
		return nil, err
	}
	e, ok := pack.Find(p.entries, ref.Offset, chunk.ID(ref.ID), ref.RawLength)
	// The type is not checked: a tree and a file chunk with the same bytes
	// are one blob (deduplication does not look at types).
	if !ok || e.Length != ref.Length {
		return nil, wire.Corruptf("blob %x (%v): pack %x has no blob of %d bytes in a frame at %d+%d",
			ref.ID[:8], t, ref.Pack, ref.RawLength, ref.Offset, ref.Length)
	}
	frame, err := p.frame(e)
	if err != nil {
		return nil, fmt.Errorf("blob %x: %w", ref.ID[:8], err)
	}
	raw, err := pack.Extract(frame, e)
	if err != nil {
		return nil, fmt.Errorf("blob %x: %w", ref.ID[:8], err)
	}
	if r.hasher.Sum(raw) != chunk.ID(ref.ID) {
		return nil, wire.Corruptf("blob %x does not match its ID", ref.ID[:8])
	}
	return raw, nil
}

// loadTree reads a tree's pieces and parses their concatenation.
func (r *restorer) loadTree(pieces []tree.Ref) (*tree.Tree, error) {
	var raw []byte
	for _, ref := range pieces {
		b, err := r.blob(ref, pack.BlobTree)
		if err != nil {
			return nil, fmt.Errorf("load tree: %w", err)
		}
		if raw == nil && len(pieces) == 1 {
			raw = b
		} else {
			raw = append(raw, b...)
		}
	}
	t, err := tree.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("load tree: %w", err)
	}
	return t, nil
}

// restoreTree restores n at path: this goroutine walks the trees, creating
// directories and symlinks and queueing files (and the chunks of files of
// several), while Workers goroutines write them, the job whose data comes
// first in the packs first (jobQueue). Directory modes and times are
// applied last, deepest first, so writing into a read-only directory or
// touching its entries never disturbs them.
func (r *restorer) restoreTree(path string, n *tree.Node) error {
	q, stop := newJobQueue(r.ctx, QueueSize)
	defer stop()
	r.queue = q
	r.order = map[[16]byte]uint32{}
	for i := 0; i < Workers; i++ {
		r.workers.Add(1)
		go func() {
			defer r.workers.Done()
			for {
				j, ok := q.pop()
				if !ok {
					return
				}
				r.prefetch(j.key.pack + 1)
				if err := r.do(j); err != nil {
					r.cancel(err)
					return
				}
			}
		}()
	}
	r.walkers = make(chan struct{}, agent.Walkers-1)
	err := r.walk(path, n)
	if err != nil {
		r.cancel(err)
	}
	r.walking.Wait()
	q.close()
	r.workers.Wait()
	r.prefetching.Wait()
	if err == nil {
		err = context.Cause(r.ctx)
	}
	if err != nil {
		return err
	}
	for i := len(r.dirMeta) - 1; i >= 0; i-- {
		if err := r.setMeta(r.dirMeta[i].path, &r.dirMeta[i].node); err != nil {
			return err
		}
	}
	return nil
}

func (r *restorer) walk(path string, n *tree.Node) error {
	if r.ctx.Err() != nil {
		return context.Cause(r.ctx)
	}
	switch n.Type {
	case tree.Dir:
		t, err := r.loadTree(n.Subtree)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := os.Mkdir(path, 0o700); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
		// A parent is listed before its children, so metadata applied in
		// reverse reaches children first, whichever walker created them.
		r.dirMu.Lock()
		r.dirMeta = append(r.dirMeta, dirJob{path: path, node: tree.Node{Type: n.Type, Mode: n.Mode, UID: n.UID, GID: n.GID, MTime: n.MTime}})
		r.dirMu.Unlock()
		r.dirs.Add(1)
		for i := range t.Nodes {
			c, cpath := &t.Nodes[i], filepath.Join(path, t.Nodes[i].Name)
			if c.Type == tree.Dir {
				// As the backup listed it: up to agent.Walkers subtrees
				// at once, so files are restored in about the order
				// their blobs were packed and each pack is fetched about
				// once (one walker fetched each pack twice).
				select {
				case r.walkers <- struct{}{}:
					r.walking.Add(1)
					go func() {
						defer r.walking.Done()
						if err := r.walk(cpath, c); err != nil {
							r.cancel(err)
						}
						<-r.walkers
					}()
					continue
				default:
				}
			}
			if err := r.walk(cpath, c); err != nil {
				return err
			}
		}
	case tree.File:
		if len(n.Content) <= 1 {
			return r.enqueue(fileJob{key: r.key(n.Content), path: path, node: n})
		}
		// Several chunks, perhaps in packs far apart: each is a job of its
		// own, written in place into the file created here.
		fd, err := createFile(path, 0o600)
		if err != nil {
			return fmt.Errorf("create file: %w", err)
		}
		if err := unix.Close(fd); err != nil {
			return fmt.Errorf("create file: %w", &os.PathError{Op: "close", Path: path, Err: err})
		}
		part := &partialFile{left: len(n.Content)}
		js := make([]fileJob, len(n.Content))
		var off int64
		for i := range n.Content {
			js[i] = fileJob{key: r.key(n.Content[i : i+1]), path: path, node: n, part: part, chunk: i, off: off}
			off += int64(n.Content[i].RawLength)
		}
		return r.enqueue(js...)
	case tree.Symlink:
		if err := os.Symlink(n.Target, path); err != nil {
			return fmt.Errorf("create symlink: %w", err)
		}
		r.links.Add(1)
		return r.setMeta(path, n)
	default:
		return wire.Corruptf("%s: unknown node type %d", path, n.Type)
	}
	return nil
}

// prefetch starts fetching data pack number i into the cache, unless it or
// a later one was prefetched already or the walk has not reached it. The
// queue hands out jobs in pack order, so when the workers finish a pack
// they all need the next one: fetched ahead, it is there or on its way
// instead of every worker waiting for its fetch.
func (r *restorer) prefetch(i uint32) {
	if i < r.prefetched.Load() {
		return
	}
	r.orderMu.Lock()
	if i >= uint32(len(r.orderIDs)) || i < r.prefetched.Load() {
		r.orderMu.Unlock()
		return
	}
	r.prefetched.Store(i + 1)
	id := r.orderIDs[i]
	r.orderMu.Unlock()
	r.prefetching.Add(1)
	go func() {
		defer r.prefetching.Done()
		// A failure is left to the job that needs the pack: the cache
		// keeps no failed fetch.
		r.pack(id, pack.BlobData)
	}()
}

// key is the queue key of a job whose data starts with refs[0].
func (r *restorer) key(refs []tree.Ref) jobKey {
	if len(refs) == 0 {
		return jobKey{}
	}
	r.orderMu.Lock()
	i, ok := r.order[refs[0].Pack]
	if !ok {
		i = uint32(len(r.order))
		r.order[refs[0].Pack] = i
		r.orderIDs = append(r.orderIDs, refs[0].Pack)
	}
	r.orderMu.Unlock()
	return jobKey{pack: i, offset: refs[0].Offset}
}

func (r *restorer) enqueue(js ...fileJob) error {
	if !r.queue.push(js...) {
		return context.Cause(r.ctx)
	}
	return nil
}

// do carries out one job.
func (r *restorer) do(j fileJob) error {
	if j.part == nil {
		if err := r.restoreFile(j.path, j.node); err != nil {
			return err
		}
		r.fileDone()
		return nil
	}
	ref := j.node.Content[j.chunk]
	data, err := r.blob(ref, pack.BlobData)
	if err != nil {
		return fmt.Errorf("%s: %w", j.path, err)
	}
	fd, err := unix.Open(j.path, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: j.path, Err: err}
	}
	if err := writeAt(fd, data, j.off); err != nil {
		unix.Close(fd)
		return &os.PathError{Op: "write", Path: j.path, Err: err}
	}
	r.bytes.Add(uint64(len(data)))
	// The last chunk written (whichever it is) applies the metadata, after
	// every other chunk's write: they counted down before it.
	j.part.mu.Lock()
	j.part.left--
	last := j.part.left == 0
	j.part.mu.Unlock()
	if last {
		if err := r.setFileMeta(fd, j.node, false); err != nil {
			unix.Close(fd)
			return fmt.Errorf("%s: %w", j.path, err)
		}
	}
	if err := unix.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: j.path, Err: err}
	}
	if last {
		r.fileDone()
	}
	return nil
}

func (r *restorer) fileDone() {
	files := r.files.Add(1)
	if r.progress != nil {
		r.progress(files, r.bytes.Load())
	}
}

// restoreFile creates the file, writes its content and applies its
// metadata through the open descriptor (three path look-ups fewer a file).
// A bare descriptor, not an *os.File: that costs five system calls more a
// file (poller registration, and the blocking mode Fd restores).
func (r *restorer) restoreFile(path string, n *tree.Node) error {
	mode, modeSet := r.created.mode(n.Mode)
	fd, err := createFile(path, mode)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	for _, ref := range n.Content {
		data, err := r.blob(ref, pack.BlobData)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := writeAt(fd, data, -1); err != nil {
			unix.Close(fd)
			return &os.PathError{Op: "write", Path: path, Err: err}
		}
		r.bytes.Add(uint64(len(data)))
	}
	if err := r.setFileMeta(fd, n, modeSet); err != nil {
		unix.Close(fd)
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := unix.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: path, Err: err}
	}
	return nil
}

// setFileMeta is setMeta for an open regular file: ownership (as root),
// then mode (chown clears setuid and setgid), then times, last, since every
// write changes them. It leaves out a chown to the owner the file was
// created with, and the chmod if modeSet (the file was created with its
// mode, which has no special bits for a chown to clear).
func (r *restorer) setFileMeta(fd int, n *tree.Node, modeSet bool) error {
	if r.root && !r.created.owns(n) {
		if err := unix.Fchown(fd, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if !modeSet {
		if err := unix.Fchmod(fd, n.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if err := futimens(fd, n.MTime); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// createFile creates path, which must not exist, for writing, with mode
// (as the umask or a default ACL leaves it).
func createFile(path string, mode uint32) (int, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// writeAt writes all of data to fd at off, or at its offset if off < 0.
func writeAt(fd int, data []byte, off int64) error {
	for len(data) > 0 {
		var n int
		var err error
		if off < 0 {
			n, err = unix.Write(fd, data)
		} else {
			n, err = unix.Pwrite(fd, data, off)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return io.ErrShortWrite
		}
		data = data[n:]
		if off >= 0 {
			off += int64(n)
		}
	}
	return nil
}

// creation is what a file created in the restore's directories gets
// without further system calls: its owner, and for a requested mode m the
// mode m&mask (the umask, or a directory's default ACL). Every directory a
// restore creates is new, 0700 until the end, under one temporary
// directory, so a file created there once (probeCreation) shows it for
// all: a set-group-ID target or a grpid mount changes the group, a default
// ACL the mask.
type creation struct {
	uid, gid uint32
	mask     uint32
	ok       bool
}

func probeCreation(dir string) (creation, error) {
	p := filepath.Join(dir, ".probe")
	fd, err := createFile(p, 0o777)
	if err != nil {
		return creation{}, err
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	unix.Close(fd)
	if rerr := unix.Unlink(p); err == nil && rerr != nil {
		err = &os.PathError{Op: "unlink", Path: p, Err: rerr}
	}
	if err != nil {
		return creation{}, err
	}
	return creation{uid: st.Uid, gid: st.Gid, mask: uint32(st.Mode) & 0o777, ok: true}, nil
}

// mode returns the mode to create a file of mode m with, and whether that
// gives it exactly m, so that no chmod is needed. Files with special bits
// (which a chown or, unprivileged, a write clears) are never among those:
// the mask has none. They, and files the mask would cut, are created 0600
// and get their mode after the writes.
func (c creation) mode(m uint32) (uint32, bool) {
	m &= 0o7777
	if !c.ok || m&c.mask != m {
		return 0o600, false
	}
	return m, true
}

// owns reports whether a new file already has n's owner and group.
func (c creation) owns(n *tree.Node) bool {
	return c.ok && n.UID == c.uid && n.GID == c.gid
}

// setMeta applies ownership (as root), mode and modification time. Symlinks
// get ownership and mtime only.
func (r *restorer) setMeta(path string, n *tree.Node) error {
	if r.root {
		if err := os.Lchown(path, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	if n.Type != tree.Symlink {
		if err := unix.Chmod(path, n.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(n.MTime), unix.NsecToTimespec(n.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", path, err)
	}
	return nil
}

// packCache keeps the plaintext of the most recently used packs and makes
// sure each pack is fetched once even when several workers need it at once.
type packCache struct {
	mu    sync.Mutex
	max   int
	tick  uint64
	items map[[16]byte]*cacheItem
}

type cacheItem struct {
	done chan struct{}
	pack *openPack
	err  error
	used uint64
}

func newPackCache(max int) *packCache {
	return &packCache{max: max, items: map[[16]byte]*cacheItem{}}
}

// get returns the opened pack, calling fetch (once) if it is not cached.
func (c *packCache) get(id [16]byte, fetch func() (*openPack, error)) (*openPack, error) {
	c.mu.Lock()
	c.tick++
	it, ok := c.items[id]
	if ok {
		it.used = c.tick
		c.mu.Unlock()
		<-it.done
		return it.pack, it.err
	}
	it = &cacheItem{done: make(chan struct{}), used: c.tick}
	c.items[id] = it
	c.evict()
	c.mu.Unlock()
	it.pack, it.err = fetch()
	close(it.done)
	if it.err != nil {
		c.mu.Lock()
		if c.items[id] == it {
			delete(c.items, id)
		}
		c.mu.Unlock()
	}
	return it.pack, it.err
}

// evict drops least recently used finished packs beyond max. Callers hold mu.
func (c *packCache) evict() {
	for len(c.items) > c.max {
		var oldest [16]byte
		var found bool
		var min uint64
		for id, it := range c.items {
			select {
			case <-it.done:
			default:
				continue // still being fetched
			}
			if !found || it.used < min {
				oldest, min, found = id, it.used, true
			}
		}
		if !found {
			return
		}
		delete(c.items, oldest)
	}
}
