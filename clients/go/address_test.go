package ratequeue

import (
	"reflect"
	"testing"
)

func TestParseURL(t *testing.T) {
	for in, want := range map[string][]endpoint{
		"localhost:7070":                     {{"localhost:7070", false}},
		"http://h1:7070,http://h2:7071":      {{"h1:7070", false}, {"h2:7071", false}},
		"https://rq.example.com":             {{"rq.example.com:443", true}},
		" h1 , https://h2:9/ ":               {{"h1:7070", false}, {"h2:9", true}},
		"[::1]:7070,::1":                     {{"[::1]:7070", false}, {"[::1]:7070", false}},
		"http://127.0.0.1:1,127.0.0.1:2,,  ": {{"127.0.0.1:1", false}, {"127.0.0.1:2", false}},
	} {
		got, err := parseURL(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseURL(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", " , ", "grpc://h:1", "http://h:1/path"} {
		if got, err := parseURL(in); err == nil {
			t.Errorf("parseURL(%q) = %v, want an error", in, got)
		}
	}
}
