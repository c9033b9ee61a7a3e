package chunkindex

import "bytes"

// Source is a sorted sequence of entries: an Iter, or a SliceSource.
type Source interface {
	Next(e *Entry) bool
	Err() error
}

// SliceSource returns a Source reading es.
func SliceSource(es []Entry) Source { return &sliceSource{es: es} }

type sliceSource struct {
	es []Entry
	i  int
}

func (s *sliceSource) Next(e *Entry) bool {
	if s.i >= len(s.es) {
		return false
	}
	*e = s.es[s.i]
	s.i++
	return true
}

func (s *sliceSource) Err() error { return nil }

// Merge writes the entries of every source to w in ID order. Sources are
// given oldest first: an ID in several sources is written once, from the
// last of them. It does not Close w.
func Merge(w *Writer, srcs ...Source) error {
	type head struct {
		src Source
		e   Entry
		ok  bool
	}
	hs := make([]head, len(srcs))
	for i, s := range srcs {
		hs[i].src = s
		hs[i].ok = s.Next(&hs[i].e)
	}
	for {
		// The smallest ID; among equal IDs, the newest source (k is small:
		// a linear scan beats a heap).
		m := -1
		for i := range hs {
			if !hs[i].ok {
				continue
			}
			if m < 0 || bytes.Compare(hs[i].e.ID[:], hs[m].e.ID[:]) <= 0 {
				m = i
			}
		}
		if m < 0 {
			break
		}
		if err := w.Add(&hs[m].e); err != nil {
			return err
		}
		id := hs[m].e.ID
		for i := range hs {
			if hs[i].ok && hs[i].e.ID == id {
				hs[i].ok = hs[i].src.Next(&hs[i].e)
			}
		}
	}
	for _, h := range hs {
		if err := h.src.Err(); err != nil {
			return err
		}
	}
	return nil
}
