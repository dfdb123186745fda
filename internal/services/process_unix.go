//go:build unix

package services

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cmdProc is a server that runs in the foreground as a child process, in
// a process group of its own so that its children end with it.
type cmdProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	sig    syscall.Signal // the clean stop
}

// startCmd starts name with args in dir, its output in log, and waits until
// addr accepts connections.
func startCmd(addr, dir, log string, stopSig syscall.Signal, name string, args ...string) (proc, error) {
	out, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &cmdProc{cmd: cmd, exited: make(chan struct{}), sig: stopSig}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	if err := waitListening(addr, p.exited, log); err != nil {
		_ = p.kill()
		return nil, err
	}
	return p, nil
}

func (p *cmdProc) stop() error {
	_ = syscall.Kill(-p.cmd.Process.Pid, p.sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = p.kill()
		return errors.New("did not stop within 10 s: killed")
	}
}

func (p *cmdProc) kill() error {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	return nil
}

// Redis starts redis-server on a free port, without persistence. Its
// clients dial s.Addr (redis://s.Addr).
func Redis(t testing.TB) *Server {
	t.Helper()
	bin := Need(t, "redis-server", "redis-server")
	return serve(t, "redis-server", func(s *Server) (proc, error) {
		return startCmd(s.Addr, s.Dir, filepath.Join(s.Dir, "redis.log"), syscall.SIGTERM, bin,
			"--bind", "127.0.0.1", "--port", strconv.Itoa(s.Port), "--save", "", "--appendonly", "no", "--dir", s.Dir)
	})
}

// NATS starts nats-server on a free port. Its clients dial
// nats://s.Addr.
func NATS(t testing.TB) *Server {
	t.Helper()
	bin := Need(t, "nats-server", "nats-server")
	return serve(t, "nats-server", func(s *Server) (proc, error) {
		return startCmd(s.Addr, s.Dir, filepath.Join(s.Dir, "nats.log"), syscall.SIGTERM, bin,
			"-a", "127.0.0.1", "-p", strconv.Itoa(s.Port))
	})
}

// Nginx starts nginx with the configuration conf, in which every
// occurrence of {{PORT}} is replaced by the port it is to listen on (its
// Addr) and {{DIR}} by its directory. The configuration must not daemonize
// (the command line adds "daemon off;") and must keep its files (pid, logs,
// temp paths) under {{DIR}}: see NginxProxy for one that does.
func Nginx(t testing.TB, conf string) *Server {
	t.Helper()
	bin := Need(t, "nginx", "nginx")
	return serve(t, "nginx", func(s *Server) (proc, error) {
		c := strings.ReplaceAll(strings.ReplaceAll(conf, "{{PORT}}", strconv.Itoa(s.Port)), "{{DIR}}", s.Dir)
		path := filepath.Join(s.Dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(c), 0o644); err != nil {
			return nil, err
		}
		return startCmd(s.Addr, s.Dir, filepath.Join(s.Dir, "error.log"), syscall.SIGQUIT, bin,
			"-p", s.Dir, "-c", path, "-g", "daemon off;")
	})
}

// NginxProxy starts nginx as a WebSocket load balancer in front of the
// given upstream addresses (host:port), round robin, passing the upgrade,
// with a long read timeout; a node that refuses connections is skipped.
func NginxProxy(t testing.TB, upstreams ...string) *Server {
	t.Helper()
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "\t\tserver %s max_fails=1 fail_timeout=1s;\n", u)
	}
	return Nginx(t, `worker_processes 1;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path {{DIR}}/client_temp;
	proxy_temp_path {{DIR}}/proxy_temp;
	fastcgi_temp_path {{DIR}}/fastcgi_temp;
	uwsgi_temp_path {{DIR}}/uwsgi_temp;
	scgi_temp_path {{DIR}}/scgi_temp;
	map $http_upgrade $connection_upgrade { default upgrade; '' close; }
	upstream wsrpc {
`+servers.String()+`	}
	server {
		listen 127.0.0.1:{{PORT}};
		location / {
			proxy_pass http://wsrpc;
			proxy_http_version 1.1;
			proxy_set_header Upgrade $http_upgrade;
			proxy_set_header Connection $connection_upgrade;
			proxy_set_header Host $host;
			proxy_read_timeout 1h;
			proxy_next_upstream error timeout;
			proxy_connect_timeout 1s;
		}
	}
}
`)
}
