package ledger

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strings"

	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera/api/layout"
)

// Handler serves the log read-only over HTTP: GET and HEAD of
// "checkpoint", "cosigned-checkpoint", "tile/L/N[.p/W]" and
// "tile/entries/N[.p/W]", relative to wherever it is mounted (wrap it in
// http.StripPrefix). Only canonical tlog-tiles paths are served, and only
// tiles and bundles that the published checkpoint covers; everything else
// is 404. Nothing is listed. It serves until Close.
func (l *Log) Handler() http.Handler { return &handler{root: l.root} }

type handler struct{ root *os.Root }

const (
	textType      = "text/plain; charset=utf-8"
	octetType     = "application/octet-stream"
	noCache       = "no-cache"
	immutableLong = "public, max-age=31536000, immutable"
)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	var ctype, cache string
	switch {
	case p == layout.CheckpointPath || p == CosignedPath:
		ctype, cache = textType, noCache
	case strings.HasPrefix(p, "tile/"):
		need, ok := resourceNeeds(p)
		if !ok {
			http.NotFound(w, r)
			return
		}
		// Serve only what the published checkpoint commits to: beyond it,
		// files may still be rewritten (a batch cut short by a crash is
		// sequenced again), so they must not be cached or relied on.
		size, err := h.publishedSize()
		if err != nil || size < need {
			http.NotFound(w, r)
			return
		}
		ctype, cache = octetType, immutableLong
	default:
		http.NotFound(w, r)
		return
	}
	f, err := h.root.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.NotFound(w, r)
		} else {
			http.Error(w, "unavailable", http.StatusInternalServerError)
		}
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", cache)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// publishedSize reads the size line of the published checkpoint (the file
// is the log's own; its signatures are not checked here).
func (h *handler) publishedSize() (uint64, error) {
	b, err := h.root.ReadFile(layout.CheckpointPath)
	if err != nil {
		return 0, err
	}
	var cp flog.Checkpoint
	if _, err := cp.Unmarshal(b); err != nil {
		return 0, err
	}
	return cp.Size, nil
}

// resourceNeeds parses a tile or entry bundle path and returns the tree size
// that first contains all of it. Only the canonical spelling of a path is
// accepted (it must format back to itself), which also rules out "..",
// doubled slashes and stray temporary files.
func resourceNeeds(p string) (uint64, bool) {
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return 0, false
	}
	if idx, ok := strings.CutPrefix(rest, "entries/"); ok {
		n, w, err := layout.ParseTileIndexPartial(idx)
		if err != nil || layout.EntriesPath(n, w) != p {
			return 0, false
		}
		return treeSizeFor(0, n, w)
	}
	lvl, idx, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, false
	}
	level, n, w, err := layout.ParseTileLevelIndexPartial(lvl, idx)
	if err != nil || layout.TilePath(level, n, w) != p {
		return 0, false
	}
	return treeSizeFor(level, n, w)
}

// treeSizeFor returns the smallest tree size with w (or, if w is 0, all 256)
// nodes in tile n of tile level level, each covering 256^level entries.
func treeSizeFor(level, n uint64, w uint8) (uint64, bool) {
	width := uint64(w)
	if w == 0 {
		width = layout.TileWidth
	}
	if n > (^uint64(0)-width)/layout.TileWidth {
		return 0, false
	}
	nodes := n*layout.TileWidth + width // nodes at this tile level's bottom row
	shift := level * layout.TileHeight
	if shift >= 64 || nodes > ^uint64(0)>>shift {
		return 0, false
	}
	return nodes << shift, true
}
