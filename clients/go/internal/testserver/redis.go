package testserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Redis is a private redis-server process on a free port of 127.0.0.1
// (never a system service). It saves nothing to disk.
type Redis struct {
	// URL is redis://127.0.0.1:PORT/0, for --redis.
	URL string

	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// RedisBinary returns the redis-server binary: $REDIS_SERVER, else the one
// on PATH.
func RedisBinary() (string, error) {
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		return p, nil
	}
	return exec.LookPath("redis-server")
}

// StartRedis starts redis-server and waits until it accepts connections.
func StartRedis() (*Redis, error) {
	bin, err := RedisBinary()
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (set REDIS_SERVER or put it on PATH): %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ratequeue-go-redis-*")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no")
	cmd.Stderr = os.Stderr
	DieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r := &Redis{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), cmd: cmd, dir: dir, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() {
		cmd.Wait()
		close(r.done)
	}()
	select {
	case <-ready:
		return r, nil
	case <-r.done:
		os.RemoveAll(dir)
		return nil, errors.New("redis-server exited before it was ready")
	case <-time.After(10 * time.Second):
		r.Stop()
		return nil, errors.New("redis-server not ready within 10s")
	}
}

// Get returns the string value of key ("" when it does not exist), over
// one RESP connection.
func (r *Redis) Get(key string) (string, error) {
	addr := strings.TrimSuffix(strings.TrimPrefix(r.URL, "redis://"), "/0")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	head, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	head = strings.TrimSuffix(head, "\r\n")
	if !strings.HasPrefix(head, "$") {
		return "", fmt.Errorf("redis GET %s: %s", key, head)
	}
	n, err := strconv.Atoi(head[1:])
	if err != nil || n < 0 {
		return "", err // $-1: no such key
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(rd, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Stop kills redis-server and removes its directory.
func (r *Redis) Stop() {
	_ = r.cmd.Process.Kill()
	<-r.done
	os.RemoveAll(r.dir)
}

// FreePort returns a port of 127.0.0.1 that nothing listened on a moment
// ago, for a process that must know its port before it starts (a group
// node's --advertise).
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
