//go:build unix

package testenv

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// TestClaimPortAcrossProcesses: a port FreeAddr handed out in one process is
// not handed out in another while the first runs.
func TestClaimPortAcrossProcesses(t *testing.T) {
	if p := os.Getenv("EMBASSY_TESTENV_CLAIM"); p != "" {
		port, _ := strconv.Atoi(p)
		if claimPort(port) {
			os.Exit(3) // claimed what the parent holds
		}
		os.Exit(0)
	}
	_, port, err := net.SplitHostPort(FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestClaimPortAcrossProcesses$")
	cmd.Env = append(os.Environ(), "EMBASSY_TESTENV_CLAIM="+port)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("another process claimed port %s, which this one holds: %v\n%s", port, err, out)
	}
	// A port nobody holds can be claimed by the child.
	free := 0
	for p := 20000; p < 32000 && free == 0; p++ {
		if !freeGiven[p] {
			free = p
		}
	}
	cmd = exec.Command(os.Args[0], "-test.run=^TestClaimPortAcrossProcesses$")
	cmd.Env = append(os.Environ(), "EMBASSY_TESTENV_CLAIM="+strconv.Itoa(free))
	if err := cmd.Run(); err == nil {
		t.Fatalf("the child could not claim port %d, which nobody holds (or another test process does)", free)
	}
}
