// Package testserver starts real ratequeue server processes for the Go
// client's tests, and a TCP proxy that can cut every connection to one.
//
// The server is server/dist/main.js (build it with `npm run build`), found
// by walking up from the working directory, or named by the environment
// variable RATEQUEUE_SERVER_JS.
package testserver

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server is a running server process.
type Server struct {
	// Addr is the server's host:port.
	Addr string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	logs []string
}

// ServerJS returns the path of server/dist/main.js.
func ServerJS() (string, error) {
	if p := os.Getenv("RATEQUEUE_SERVER_JS"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "server", "dist", "main.js")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("server/dist/main.js not found above the working directory: run `npm run build` at the repository root or set RATEQUEUE_SERVER_JS")
		}
		dir = parent
	}
}

// Options says how to start a server.
type Options struct {
	// Config is the YAML configuration ("" for none).
	Config string
	// Port is the port of 127.0.0.1 to listen on (0: a free one).
	Port int
	// Env is added to the test process's environment, as "NAME=value".
	Env []string
	// Args are added to the serve command line, for example TLS or Redis
	// flags.
	Args []string
}

// Start starts a server on a free port of 127.0.0.1 with the given YAML
// configuration and waits until it listens.
func Start(configYAML string) (*Server, error) {
	return StartWith(Options{Config: configYAML})
}

// StartOn is Start on the given port of 127.0.0.1 (0: a free one), for
// example the port of a server that was stopped, to stand in for it.
func StartOn(configYAML string, port int) (*Server, error) {
	return StartWith(Options{Config: configYAML, Port: port})
}

// StartWith starts a server as o says and waits until it listens.
func StartWith(o Options) (*Server, error) {
	js, err := ServerJS()
	if err != nil {
		return nil, err
	}
	// A free HTTP port too: a restart on a fixed --port would otherwise take the default 7071.
	args := []string{js, "serve", "--host", "127.0.0.1", "--port", strconv.Itoa(o.Port), "--http-port", "0"}
	if o.Config != "" {
		f, err := os.CreateTemp("", "ratequeue-go-test-*.yaml")
		if err != nil {
			return nil, err
		}
		defer os.Remove(f.Name()) // the server reads it at start
		if _, err := f.WriteString(o.Config); err != nil {
			f.Close()
			return nil, err
		}
		f.Close()
		args = append(args, "--config", f.Name())
	}
	args = append(args, o.Args...)
	cmd := exec.Command("node", args...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Stderr = os.Stderr
	DieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{cmd: cmd, done: make(chan struct{})}
	bound := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs = append(s.logs, line)
			s.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				Port int    `json:"port"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" && rec.Port > 0 {
				select {
				case bound <- rec.Port:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	select {
	case p := <-bound:
		s.Addr = fmt.Sprintf("127.0.0.1:%d", p)
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("server exited before listening:\n%s", s.Logs())
	case <-time.After(20 * time.Second):
		s.Stop()
		return nil, fmt.Errorf("server did not log \"listening\" within 20s:\n%s", s.Logs())
	}
}

// Logs returns the server's stdout so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.logs, "\n")
}

// Stop sends SIGTERM and waits for the process to exit (killing it after
// 10 s).
func (s *Server) Stop() error {
	if s.cmd.Process == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return errors.New("server did not stop within 10s of SIGTERM; killed")
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (s *Server) Kill() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// WaitLog waits until the server has logged a line whose msg is msg (one
// logged before the call counts).
func (s *Server) WaitLog(msg string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		for _, line := range s.logs {
			var rec struct {
				Msg string `json:"msg"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
				s.mu.Unlock()
				return nil
			}
		}
		s.mu.Unlock()
		select {
		case <-s.done:
			return fmt.Errorf("the server exited before logging %q:\n%s", msg, s.Logs())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not log %q within %v:\n%s", msg, timeout, s.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ExitCode returns the process's exit status once it has exited (after
// Stop), or -1 while it runs or when a signal ended it.
func (s *Server) ExitCode() int {
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Proxy forwards TCP connections to a target and can cut them all.
type Proxy struct {
	// Addr is the proxy's host:port.
	Addr string

	ln       net.Listener
	target   string
	accepted atomic.Int64 // connections forwarded
	sent     atomic.Int64 // bytes forwarded from clients to the target
	mu       sync.Mutex
	paused   bool
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// Accepted returns how many connections the proxy has forwarded.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Sent returns how many bytes clients have sent through the proxy: it grows
// with every call or stream a client starts, not while the client is idle.
func (p *Proxy) Sent() int64 { return p.sent.Load() }

// NewProxy listens on a free port of 127.0.0.1 and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		paused := p.paused
		p.mu.Unlock()
		if paused {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.accepted.Add(1)
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out, nil)
		go p.pipe(out, in, &p.sent)
	}
}

// pipe copies src to dst, adding the bytes to count when it is not nil.
func (p *Proxy) pipe(dst, src net.Conn, count *atomic.Int64) {
	defer p.wg.Done()
	var w io.Writer = dst
	if count != nil {
		w = countingWriter{dst, count}
	}
	io.Copy(w, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// Cut closes every open connection; new ones are still accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Pause cuts every connection and refuses new ones until Resume.
func (p *Proxy) Pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	p.Cut()
}

// Resume accepts connections again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}

// Close stops accepting and cuts every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
