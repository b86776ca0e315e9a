// Command hello is the demo workload of `make run`: a tiny HTTP server,
// built statically and packed into an image by `skiff demo-image`, so the
// demo needs no registry.
//
//	GET /         a greeting ($MESSAGE) with the pod's name and IP
//	GET /healthz  200 while /tmp/unhealthy does not exist (probe demos)
//	GET /exit?code=N  exits with N (restart and back-off demos)
//
// `hello get URL` is a client instead (pod-to-pod demos through kubectl
// exec): it prints the body and exits 0 on a 2xx answer.
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2]))
	}
	addr := ":8080"
	if p := os.Getenv("PORT"); p != "" {
		addr = ":" + p
	}
	msg := os.Getenv("MESSAGE")
	if msg == "" {
		msg = "Hello from Skiff"
	}
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprintf(w, "%s (pod %s, IP %s)\n", msg, host, os.Getenv("POD_IP"))
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat("/tmp/unhealthy"); err == nil {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		log.Printf("exiting with %d as asked", code)
		os.Exit(code)
	})
	log.Printf("listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}

func get(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}
