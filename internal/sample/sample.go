// Package sample generates a registry-like file tree, deterministic from a
// seed: a population register (CSV), a land register with scanned-document
// blobs that do not compress, State Gazette texts, and a business register as
// many small JSON files; plus an Edit step that changes about one percent.
// The demo and the benchmarks use it; tests also use real trees.
package sample

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

var (
	first = []string{"Mari", "Jaan", "Kadri", "Andres", "Liis", "Toomas", "Kristiina", "Peeter", "Anna", "Mihkel", "Eva", "Rasmus", "Laura", "Oskar", "Helena", "Markus"}
	last  = []string{"Tamm", "Saar", "Sepp", "Mägi", "Kask", "Kukk", "Rebane", "Ilves", "Pärn", "Koppel", "Lepik", "Kuusk", "Vaher", "Lõhmus", "Karu", "Teder"}
	towns = []string{"Tallinn", "Tartu", "Narva", "Pärnu", "Kohtla-Järve", "Viljandi", "Maardu", "Rakvere", "Kuressaare", "Sillamäe", "Valga", "Võru"}
	words = strings.Fields(`the minister regulation shall enter into force decree parliament article section
		amendment procedure registry authority public notice hereby council local government land parcel
		cadastral register population residence permit business company shareholder annual report appeal
		court decision tender procurement budget allocation municipality county ordinance pursuant`)
)

// Mix is how many bytes each register gets, as fractions of the total.
type Mix struct{ Population, Land, Gazette, Business float64 }

// DefaultMix is roughly what a national registry archive looks like.
var DefaultMix = Mix{Population: 0.35, Land: 0.35, Gazette: 0.15, Business: 0.15}

// Generate writes a registry of about size bytes under dir (population/,
// land/, gazette/, business/). The same seed and size give the same bytes.
func Generate(dir string, size int64, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 0x656d6261737379))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []func() error{
		func() error {
			return population(filepath.Join(dir, "population"), int64(float64(size)*DefaultMix.Population), r)
		},
		func() error { return land(filepath.Join(dir, "land"), int64(float64(size)*DefaultMix.Land), r) },
		func() error {
			return gazette(filepath.Join(dir, "gazette"), int64(float64(size)*DefaultMix.Gazette), r)
		},
		func() error {
			return business(filepath.Join(dir, "business"), int64(float64(size)*DefaultMix.Business), r)
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	// Fixed times, so two generations are identical to the last byte and mtime.
	return filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(p, base, base)
	})
}

func personRow(r *rand.Rand, id int) string {
	return fmt.Sprintf("%011d,%s,%s,%04d-%02d-%02d,%s,%s %d-%d,%s\n", 30000000000+id*7919%70000000000,
		first[r.IntN(len(first))], last[r.IntN(len(last))], 1930+r.IntN(95), 1+r.IntN(12), 1+r.IntN(28),
		towns[r.IntN(len(towns))], last[r.IntN(len(last))]+" tn", 1+r.IntN(200), 1+r.IntN(120),
		[]string{"citizen", "resident", "e-resident"}[r.IntN(3)])
}

func population(dir string, size int64, r *rand.Rand) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "persons.csv"))
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("personal_code,first_name,last_name,birth_date,town,address,status\n")
	var written int64
	for id := 0; written < size; id++ {
		b.WriteString(personRow(r, id))
		if b.Len() > 1<<20 {
			n, err := f.WriteString(b.String())
			if err != nil {
				f.Close()
				return err
			}
			written += int64(n)
			b.Reset()
		}
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "README.txt"), []byte("Population register extract. One row per person.\n"), 0o644)
}

func land(dir string, size int64, r *rand.Rand) error {
	scans := filepath.Join(dir, "scans")
	if err := os.MkdirAll(scans, 0o755); err != nil {
		return err
	}
	var idx strings.Builder
	idx.WriteString("parcel,area_m2,town,deed\n")
	var written int64
	for i := 0; written < size; i++ {
		n := int64(64<<10 + r.IntN(2<<20)) // 64 KiB – 2 MiB, like scanned deeds
		if n > size-written {
			n = max(size-written, 1024)
		}
		blob := make([]byte, n)
		for j := 0; j+8 <= len(blob); j += 8 {
			v := r.Uint64()
			for k := 0; k < 8; k++ {
				blob[j+k] = byte(v >> (8 * k))
			}
		}
		name := fmt.Sprintf("deed-%06d.scan", i)
		sub := filepath.Join(scans, fmt.Sprintf("%03d", i/100))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sub, name), blob, 0o640); err != nil {
			return err
		}
		fmt.Fprintf(&idx, "%05d:%03d:%04d,%d,%s,%s\n", r.IntN(99999), r.IntN(999), r.IntN(9999), 200+r.IntN(50000), towns[r.IntN(len(towns))], name)
		written += n
	}
	if err := os.WriteFile(filepath.Join(dir, "parcels.csv"), []byte(idx.String()), 0o644); err != nil {
		return err
	}
	// The current index is a symlink, as registries often publish one.
	return os.Symlink("parcels.csv", filepath.Join(dir, "current.csv"))
}

func paragraph(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	b.WriteString(".\n")
	return b.String()
}

func gazette(dir string, size int64, r *rand.Rand) error {
	var written int64
	for i := 0; written < size; i++ {
		year := 2000 + i%26
		d := filepath.Join(dir, fmt.Sprint(year))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "STATE GAZETTE %d / No. %d\n\n", year, i)
		for p := 0; p < 20+r.IntN(200); p++ {
			fmt.Fprintf(&b, "§ %d. ", p+1)
			b.WriteString(paragraph(r, 20+r.IntN(80)))
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("issue-%05d.txt", i)), []byte(b.String()), 0o644); err != nil {
			return err
		}
		written += int64(b.Len())
	}
	return nil
}

type company struct {
	Code        int      `json:"registry_code"`
	Name        string   `json:"name"`
	Town        string   `json:"town"`
	Founded     string   `json:"founded"`
	Capital     int      `json:"share_capital_eur"`
	Board       []string `json:"board"`
	Activity    string   `json:"activity"`
	Status      string   `json:"status"`
	AnnualTurns []int    `json:"annual_turnover_eur"`
}

func newCompany(r *rand.Rand, code int) company {
	c := company{Code: 10000000 + code, Name: last[r.IntN(len(last))] + " " + []string{"OÜ", "AS", "MTÜ", "SA"}[r.IntN(4)],
		Town: towns[r.IntN(len(towns))], Founded: fmt.Sprintf("%04d-%02d-%02d", 1992+r.IntN(34), 1+r.IntN(12), 1+r.IntN(28)),
		Capital: 2500 * (1 + r.IntN(400)), Activity: paragraph(r, 6), Status: []string{"registered", "in liquidation", "deleted"}[r.IntN(3)]}
	for i := 0; i < 1+r.IntN(4); i++ {
		c.Board = append(c.Board, first[r.IntN(len(first))]+" "+last[r.IntN(len(last))])
	}
	for i := 0; i < r.IntN(10); i++ {
		c.AnnualTurns = append(c.AnnualTurns, r.IntN(10_000_000))
	}
	return c
}

func business(dir string, size int64, r *rand.Rand) error {
	var written int64
	for i := 0; written < size; i++ {
		d := filepath.Join(dir, fmt.Sprintf("%04d", i/500))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(newCompany(r, i), "", "  ")
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("%08d.json", 10000000+i)), b, 0o644); err != nil {
			return err
		}
		written += int64(len(b))
	}
	return nil
}

// Edit changes about fraction (e.g. 0.01) of the registry in dir the way a
// day of registry work does: rows rewritten in place in the population
// register, a few new deeds, amended company files, a new gazette issue.
func Edit(dir string, fraction float64, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 0x65646974))
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	touch := func(p string) error { return os.Chtimes(p, now, now) }

	// Population: a day's births and arrivals appended (half the fraction),
	// and a run of amended records in one region (the other half), as a
	// batch update of one municipality's rows would leave them.
	pf := filepath.Join(dir, "population", "persons.csv")
	data, err := os.ReadFile(pf)
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(data), "\n")
	n := int(float64(len(lines)) * fraction / 2)
	if len(lines) > n+2 {
		at := 1 + r.IntN(len(lines)-n-1)
		for i := 0; i < n; i++ {
			lines[at+i] = personRow(r, 90000000+i)
		}
	}
	for i := 0; i < n; i++ {
		lines = append(lines, personRow(r, 95000000+i))
	}
	if err := os.WriteFile(pf, []byte(strings.Join(lines, "")), 0o644); err != nil {
		return err
	}
	if err := touch(pf); err != nil {
		return err
	}

	// Land: a few new deeds, sized to the fraction of the existing scans.
	var scanBytes int64
	var scanDirs []string
	_ = filepath.Walk(filepath.Join(dir, "land", "scans"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			scanBytes += fi.Size()
		}
		if err == nil && fi.IsDir() {
			scanDirs = append(scanDirs, p)
		}
		return nil
	})
	if len(scanDirs) > 0 {
		want := int64(float64(scanBytes) * fraction)
		for i := 0; want > 0; i++ {
			n := min(int64(64<<10+r.IntN(1<<20)), want)
			blob := make([]byte, n)
			for j := range blob {
				blob[j] = byte(r.Uint32())
			}
			p := filepath.Join(scanDirs[len(scanDirs)-1], fmt.Sprintf("deed-new-%04d.scan", i))
			if err := os.WriteFile(p, blob, 0o640); err != nil {
				return err
			}
			if err := touch(p); err != nil {
				return err
			}
			want -= n
		}
	}

	// Business: amend a fraction of the companies.
	var companies []string
	_ = filepath.Walk(filepath.Join(dir, "business"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			companies = append(companies, p)
		}
		return nil
	})
	for i := 0; i < int(float64(len(companies))*fraction)+1 && len(companies) > 0; i++ {
		p := companies[r.IntN(len(companies))]
		b, _ := json.MarshalIndent(newCompany(r, 5000000+i), "", "  ")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		if err := touch(p); err != nil {
			return err
		}
	}

	// Gazette: one new issue.
	g := filepath.Join(dir, "gazette", "2026")
	if err := os.MkdirAll(g, 0o755); err != nil {
		return err
	}
	p := filepath.Join(g, "issue-new.txt")
	if err := os.WriteFile(p, []byte("STATE GAZETTE 2026 / extraordinary\n\n"+paragraph(r, 400)), 0o644); err != nil {
		return err
	}
	return touch(p)
}
