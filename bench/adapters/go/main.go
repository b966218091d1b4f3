// The net/http app of the gorilla/sessions row of the adapter benchmark
// (bench/adapters/run.py): one program, two stores.
//
//	gorilla-bench-app -store valkey-sessions -addr 127.0.0.1:50051
//	gorilla-bench-app -store redistore -addr 127.0.0.1:6379
//
// GET /init writes a small session (a user object and a 10-item cart), GET /read reads it and
// renders a line of HTML ("read the session, render"). Listens on a free loopback port and
// prints it on stdout. Built offline in GOPATH mode against Debian's packages
// (golang-github-gorilla-sessions-dev, golang-github-boj-redistore-dev).
package main

import (
	"encoding/gob"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/boj/redistore"
	"github.com/gorilla/sessions"

	"github.com/valkey-sessions/valkey-sessions/clients/go/gorillastore"
)

func main() {
	kind := flag.String("store", "valkey-sessions", "valkey-sessions or redistore")
	addr := flag.String("addr", "127.0.0.1:50051", "the service (valkey-sessions) or Valkey (redistore)")
	pool := flag.Int("pool", 10, "redistore: redigo pool size (its README's example: 10)")
	flag.Parse()

	var store sessions.Store
	switch *kind {
	case "valkey-sessions":
		s, err := gorillastore.NewStore(gorillastore.Options{Address: *addr})
		if err != nil {
			log.Fatal(err)
		}
		store = s
	case "redistore":
		// redistore's default: gob-encoded values, the id in a securecookie (HMAC-signed).
		gob.Register(map[string]interface{}{})
		gob.Register([]interface{}{})
		s, err := redistore.NewRediStore(*pool, "tcp", *addr, "", []byte("bench-secret-key-0123456789abcdef"))
		if err != nil {
			log.Fatal(err)
		}
		store = s
	default:
		log.Fatalf("unknown store %q", *kind)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/init", func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, "session")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.Values["user"] = map[string]interface{}{"name": "bench", "roles": []interface{}{"reader"}}
		cart := make([]interface{}, 10)
		for i := range cart {
			cart[i] = float64(i)
		}
		s.Values["cart"] = cart
		if err := s.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, "session")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		name := "-"
		if u, ok := s.Values["user"].(map[string]interface{}); ok {
			if n, ok := u["name"].(string); ok {
				name = n
			}
		}
		cart, _ := s.Values["cart"].([]interface{})
		fmt.Fprintf(w, "<html><body><p>%s</p><p>%d items</p></body></html>", name, len(cart))
	})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	log.Fatal(http.Serve(l, mux))
}
