//go:build unix

package services

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Postgres makes a new PostgreSQL cluster with initdb and starts it on a
// free port, with trust authentication for the user postgres. Its clients
// dial postgres://postgres@s.Addr/postgres (see PostgresURL). PostgreSQL
// refuses to run as root: as root, its programs run as the user postgres,
// which Debian's package creates.
func Postgres(t testing.TB) *Server {
	t.Helper()
	bin := postgresBin(t)
	asRoot := os.Geteuid() == 0
	var uid, gid int
	if asRoot {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("services: running PostgreSQL as root needs the user postgres: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	// t.TempDir's parents are private to root: the cluster lives in a
	// directory of its own that the user postgres owns.
	dir, err := os.MkdirTemp("", "wsrpc-postgres-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if asRoot {
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) error {
		var cmd *exec.Cmd
		if asRoot {
			cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		} else {
			cmd = exec.Command(filepath.Join(bin, name), args...)
		}
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		t.Fatalf("services: %v", err)
	}
	return serve(t, "postgres", func(s *Server) (proc, error) {
		s.Dir = dir
		log := filepath.Join(dir, "log")
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", s.Port, dir)
		if err := run("pg_ctl", "-D", data, "-o", opts, "-l", log, "-w", "-t", "30", "start"); err != nil {
			return nil, fmt.Errorf("%v: %s", err, tail(log))
		}
		return &pgProc{data: data, run: run}, nil
	})
}

// PostgresURL is the address a client of a Server from Postgres dials.
func PostgresURL(s *Server) string {
	return "postgres://postgres@" + s.Addr + "/postgres?sslmode=disable"
}

// postgresBin finds the directory of initdb and pg_ctl.
func postgresBin(t testing.TB) string {
	t.Helper()
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(dirs) > 0 {
		return dirs[len(dirs)-1]
	}
	return filepath.Dir(Need(t, "initdb", "postgresql"))
}

// pgProc is a running PostgreSQL cluster, which pg_ctl started in the
// background.
type pgProc struct {
	data string
	run  func(name string, args ...string) error
}

func (p *pgProc) stop() error {
	return p.run("pg_ctl", "-D", p.data, "-m", "fast", "-w", "stop")
}

func (p *pgProc) kill() error {
	b, err := os.ReadFile(filepath.Join(p.data, "postmaster.pid"))
	if err != nil {
		return err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return fmt.Errorf("postmaster.pid: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	// Its backends notice the postmaster's death and exit; wait for it.
	for range 500 {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("postmaster still running 5 s after SIGKILL")
}
