package ratequeue

import (
	"fmt"
	"net"
	"strings"

	"github.com/ratequeue/ratequeue/clients/go/internal/protocol"
)

// DefaultURL is the address used when Dial is given none and RATEQUEUE_URL
// is unset: the server's default bind.
const DefaultURL = protocol.DefaultURL

// endpoint is one server address.
type endpoint struct {
	target string // host:port
	tls    bool
}

func (e endpoint) String() string {
	if e.tls {
		return "https://" + e.target
	}
	return "http://" + e.target
}

// parseURL parses RATEQUEUE_URL syntax: a comma-separated list of
// http://host:port, https://host:port or bare host:port. https:// means
// TLS. A missing port means 7070 (443 for https).
func parseURL(url string) ([]endpoint, error) {
	var eps []endpoint
	for _, part := range strings.Split(url, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		tls := false
		switch {
		case strings.HasPrefix(part, "https://"):
			tls, part = true, strings.TrimPrefix(part, "https://")
		case strings.HasPrefix(part, "http://"):
			part = strings.TrimPrefix(part, "http://")
		case strings.Contains(part, "://"):
			return nil, fmt.Errorf("ratequeue: address %q: the scheme must be http:// or https://", part)
		}
		part = strings.TrimRight(part, "/")
		if strings.Contains(part, "/") {
			return nil, fmt.Errorf("ratequeue: address %q: a path is not allowed, give host:port", part)
		}
		if _, _, err := net.SplitHostPort(part); err != nil {
			port := protocol.DefaultPort
			if tls {
				port = "443"
			}
			part = net.JoinHostPort(strings.Trim(part, "[]"), port)
		}
		eps = append(eps, endpoint{target: part, tls: tls})
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("ratequeue: address %q is empty", url)
	}
	return eps, nil
}
