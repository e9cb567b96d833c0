package testhost

import (
	"fmt"
	"os"
	"os/exec"
)

// Command is an exec.Cmd that runs name with args in the test host's
// network namespace (through nsenter, which execs name there), as a
// separate process: a server the host reaches at Addr. The caller starts,
// stops and waits for it; it must be gone before the test host is removed.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	ns := fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), int(h.ns))
	return exec.Command("nsenter", append([]string{ns, "--", name}, args...)...)
}
