// The gorilla/sessions store the way gorilla is used: a net/http server (httptest) whose handlers
// use the store, driven by an http.Client with a cookie jar, against the REAL service at
// SESSION_SERVICE_ADDR (no mocks). CI: clients/adapters-test.sh (gorilla).
package gorillastore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sessionv1 "github.com/valkey-sessions/valkey-sessions/clients/go/gen/session/v1"
	"github.com/valkey-sessions/valkey-sessions/clients/go/gorillastore"
)

const cookieName = "sid"

var (
	addr    string
	service sessionv1.SessionServiceClient
)

func TestMain(m *testing.M) {
	addr = os.Getenv("SESSION_SERVICE_ADDR")
	if addr == "" {
		println("set SESSION_SERVICE_ADDR=host:port of a running valkey-sessions")
		os.Exit(2)
	}
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	if err != nil {
		println("dial", addr, err.Error())
		os.Exit(2)
	}
	service = sessionv1.NewSessionServiceClient(conn)
	code := m.Run()
	conn.Close()
	os.Exit(code)
}

// app is a small gorilla app: a page, a cart, login, logout, and an unserializable value.
func app(t *testing.T, store *gorillastore.Store) string {
	t.Helper()
	fail := func(w http.ResponseWriter, err error) {
		if errors.Is(err, gorillastore.ErrStorageFull) {
			http.Error(w, gorillastore.StorageFullMessage, http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "error: "+err.Error(), http.StatusInternalServerError)
	}
	items := func(s *sessions.Session) []string {
		var out []string
		list, _ := s.Values["items"].([]interface{})
		for _, v := range list {
			out = append(out, fmt.Sprint(v))
		}
		return out
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, cookieName)
		if err != nil {
			fail(w, err)
			return
		}
		user, _ := s.Values["user"].(string)
		if user == "" {
			user = "-"
		}
		fmt.Fprintf(w, "user=%s items=%s", user, strings.Join(items(s), ","))
	})
	mux.HandleFunc("/items/", func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, cookieName)
		if err != nil {
			fail(w, err)
			return
		}
		list := items(s)
		ms, _ := strconv.Atoi(r.URL.Query().Get("delay_ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		list = append(list, strings.TrimPrefix(r.URL.Path, "/items/"))
		s.Values["items"] = list
		if err := s.Save(r, w); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, strings.Join(list, ","))
	})
	mux.HandleFunc("/login/", func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, cookieName)
		if err != nil {
			fail(w, err)
			return
		}
		user := strings.TrimPrefix(r.URL.Path, "/login/")
		s.Values["user"] = user
		if err := store.Regenerate(r, w, s, user+"@example.com"); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, user)
	})
	mux.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, cookieName)
		if err != nil {
			fail(w, err)
			return
		}
		s.Options.MaxAge = -1
		if err := s.Save(r, w); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, "bye")
	})
	mux.HandleFunc("/unserializable/", func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, cookieName)
		if err != nil {
			fail(w, err)
			return
		}
		switch strings.TrimPrefix(r.URL.Path, "/unserializable/") {
		case "chan":
			s.Values["ch"] = make(chan int)
		case "nan":
			s.Values["ratio"] = math.NaN()
		case "intkey":
			s.Values[42] = "answer"
		}
		s.Values["items"] = append(items(s), "never")
		if err := s.Save(r, w); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, "stored")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func newStore(t *testing.T, o gorillastore.Options) *gorillastore.Store {
	t.Helper()
	if o.Address == "" {
		o.Address = addr
	}
	if o.Cookie == nil { // the test servers speak plain HTTP: a Secure cookie would not come back
		o.Cookie = &sessions.Options{Path: "/", MaxAge: 86400, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	}
	s, err := gorillastore.NewStore(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
}

type reply struct {
	status    int
	body      string
	setCookie string
}

// do sends a request; cookie, when not "", replaces the jar's cookie for this request.
func (b *browser) do(method, path, cookie string) reply {
	b.t.Helper()
	req, _ := http.NewRequest(method, b.base+path, nil)
	c := b.c
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
		c = &http.Client{Timeout: 20 * time.Second}
	}
	res, err := c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, string(body), res.Header.Get("Set-Cookie")}
}
func (b *browser) get(path string) reply  { b.t.Helper(); return b.do("GET", path, "") }
func (b *browser) post(path string) reply { b.t.Helper(); return b.do("POST", path, "") }

// sid is the session cookie's value: the service's session id.
func (b *browser) sid() string {
	u, _ := url.Parse(b.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == cookieName {
			return c.Value
		}
	}
	return ""
}

func want(t *testing.T, got reply, status int, body string) {
	t.Helper()
	if got.status != status || got.body != body {
		t.Fatalf("got %d %q, want %d %q", got.status, got.body, status, body)
	}
}

func serviceGet(t *testing.T, id string) (*sessionv1.Session, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := service.Get(ctx, &sessionv1.GetRequest{Id: id, Consistency: sessionv1.Consistency_CONSISTENCY_STRONG})
	return res.GetSession(), err
}

func wantGone(t *testing.T, id, what string) {
	t.Helper()
	if _, err := serviceGet(t, id); status.Code(err) != codes.NotFound {
		t.Fatalf("%s: Get = %v, want NOT_FOUND", what, err)
	}
}

func TestSessionSurvivesRequestsAndIsReadableAcrossLanguages(t *testing.T) {
	b := newBrowser(t, app(t, newStore(t, gorillastore.Options{})))
	r := b.get("/")
	want(t, r, 200, "user=- items=")
	if r.setCookie != "" {
		t.Fatalf("an unsaved session set a cookie: %q", r.setCookie)
	}
	b.post("/items/apple")
	b.post("/items/pear")
	want(t, b.get("/"), 200, "user=- items=apple,pear")
	s, err := serviceGet(t, b.sid())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.GetAttributes()["items"]); got != `["apple","pear"]` {
		t.Fatalf("items attribute %q: one attribute per key holding JSON", got)
	}
	if len(s.GetAttributes()) != 1 {
		t.Fatalf("attributes %v: nothing but the session's keys is stored", s.GetAttributes())
	}
	if d := s.GetIdleTimeout().AsDuration(); d != 24*time.Hour {
		t.Fatalf("idle timeout %v, want the cookie's MaxAge (86400 s)", d)
	}
	if len(b.sid()) != 55 {
		t.Fatalf("cookie value of %d characters, want the service's 55-character id", len(b.sid()))
	}
}

func TestSessionExpiresAfterIdleTimeout(t *testing.T) {
	b := newBrowser(t, app(t, newStore(t, gorillastore.Options{Cookie: &sessions.Options{Path: "/", MaxAge: 2}})))
	b.post("/items/apple")
	want(t, b.get("/"), 200, "user=- items=apple")
	id := b.sid()
	s, err := serviceGet(t, id)
	if err != nil || s.GetIdleTimeout().AsDuration() != 2*time.Second {
		t.Fatalf("idle timeout %v (%v), want MaxAge 2 s", s.GetIdleTimeout().AsDuration(), err)
	}
	time.Sleep(3 * time.Second)
	want(t, b.do("GET", "/", cookieName+"="+id), 200, "user=- items=")
	wantGone(t, id, "after the idle timeout")
}

func TestLogoutDestroysTheSession(t *testing.T) {
	b := newBrowser(t, app(t, newStore(t, gorillastore.Options{})))
	b.post("/items/apple")
	id := b.sid()
	r := b.post("/logout")
	want(t, r, 200, "bye")
	if !strings.Contains(r.setCookie, "Max-Age=0") {
		t.Fatalf("logout cookie %q, want it expired", r.setCookie)
	}
	wantGone(t, id, "after logout")
	want(t, b.get("/"), 200, "user=- items=")
	want(t, b.do("GET", "/", cookieName+"="+id), 200, "user=- items=")
}

func TestLoginRotatesTheIdAndTheOldCookieNoLongerWorks(t *testing.T) {
	b := newBrowser(t, app(t, newStore(t, gorillastore.Options{})))
	b.post("/items/apple")
	before := b.sid()
	want(t, b.post("/login/ada"), 200, "ada")
	after := b.sid()
	if after == before || after == "" {
		t.Fatalf("id not rotated at login")
	}
	want(t, b.get("/"), 200, "user=ada items=apple")
	want(t, b.do("GET", "/", cookieName+"="+before), 200, "user=- items=")
	wantGone(t, before, "the pre-login id")
	s, err := serviceGet(t, after)
	if err != nil || s.GetPrincipal() != "ada@example.com" {
		t.Fatalf("principal %q (%v), want ada@example.com", s.GetPrincipal(), err)
	}
	// A login on a session never saved before: created with the principal directly.
	c := newBrowser(t, b.base)
	want(t, c.post("/login/bob"), 200, "bob")
	if s, err := serviceGet(t, c.sid()); err != nil || s.GetPrincipal() != "bob@example.com" {
		t.Fatalf("principal %q (%v), want bob@example.com", s.GetPrincipal(), err)
	}
	want(t, c.get("/"), 200, "user=bob items=")
}

func TestTwoConcurrentRequestsEachAddingAnItemKeepBoth(t *testing.T) {
	b := newBrowser(t, app(t, newStore(t, gorillastore.Options{})))
	b.post("/items/first")
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		replies := make([]reply, 2)
		for i, item := range []string{"a", "b"} {
			wg.Add(1)
			go func(i int, item string) {
				defer wg.Done()
				replies[i] = b.post(fmt.Sprintf("/items/%s%d?delay_ms=300", item, round))
			}(i, item)
		}
		wg.Wait()
		for _, r := range replies {
			if r.status != 200 {
				t.Fatalf("round %d: %d %s", round, r.status, r.body)
			}
		}
		page := b.get("/").body
		if !strings.Contains(page, fmt.Sprintf("a%d", round)) || !strings.Contains(page, fmt.Sprintf("b%d", round)) {
			t.Fatalf("round %d lost an item: %s", round, page)
		}
	}
	if page := b.get("/").body; len(strings.Split(page, ",")) != 7 {
		t.Fatalf("%s: want first + 6 items, none lost", page)
	}
}

func TestBadCookieIsANewSessionWithoutAnErrorPage(t *testing.T) {
	b := newBrowser(t, app(t, newStore(t, gorillastore.Options{})))
	for _, c := range []string{
		cookieName + "=garbage",
		cookieName + "=not%20an%20id",
		cookieName + "=",
		cookieName + "=" + strings.Repeat("A", 4000),
		cookieName + "=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",             // well-formed, not random
		cookieName + "=Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5",            // well-formed, unknown
		cookieName + "=aaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", // tagged form, unknown
	} {
		want(t, b.do("GET", "/", c), 200, "user=- items=")
	}
	// Adding to a session with a bad cookie creates a new one (a service-chosen id).
	r := b.do("POST", "/items/x", cookieName+"=garbage")
	want(t, r, 200, "x")
	if !strings.HasPrefix(r.setCookie, cookieName+"=") || strings.HasPrefix(r.setCookie, cookieName+"=garbage") {
		t.Fatalf("set-cookie %q, want a new id", r.setCookie)
	}
}

func TestSessionDeletedByAnotherDeviceBetweenRequests(t *testing.T) {
	b := newBrowser(t, app(t, newStore(t, gorillastore.Options{})))
	b.post("/login/ada")
	b.post("/items/apple")
	id := b.sid()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if res, err := service.Delete(ctx, &sessionv1.DeleteRequest{Id: id}); err != nil || !res.GetExisted() {
		t.Fatalf("delete: %v %v", res, err)
	}
	want(t, b.get("/"), 200, "user=- items=")
	want(t, b.post("/items/pear"), 200, "pear")
	if b.sid() == id {
		t.Fatal("the deleted id was reused")
	}
	wantGone(t, id, "not resurrected by the next save")

	// Deleted while a request is running (between its load and its save): the save is dropped.
	b.post("/items/one")
	id = b.sid()
	done := make(chan reply)
	go func() { done <- b.post("/items/two?delay_ms=500") }()
	time.Sleep(200 * time.Millisecond)
	if _, err := service.Delete(ctx, &sessionv1.DeleteRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.status != 200 || !strings.Contains(r.setCookie, "Max-Age=0") {
		t.Fatalf("save racing the delete: %d %q set-cookie %q, want dropped and the cookie expired", r.status, r.body, r.setCookie)
	}
	wantGone(t, id, "not resurrected by a racing save")
	want(t, b.get("/"), 200, "user=- items=")
}

func TestUnserializableValueIsAClearErrorAndStoresNothing(t *testing.T) {
	b := newBrowser(t, app(t, newStore(t, gorillastore.Options{})))
	b.post("/items/apple")
	for what, msg := range map[string]string{
		"chan":   `session key "ch" cannot be serialized to JSON: json: unsupported type: chan int`,
		"nan":    `session key "ratio" cannot be serialized to JSON: json: unsupported value: NaN`,
		"intkey": `session key 42 is a int, not a string`,
	} {
		r := b.post("/unserializable/" + what)
		if r.status != 500 || !strings.Contains(r.body, msg) {
			t.Fatalf("%s: %d %q, want 500 with %q", what, r.status, r.body, msg)
		}
		if r.setCookie != "" {
			t.Fatalf("%s: set-cookie %q on a failed save", what, r.setCookie)
		}
		want(t, b.get("/"), 200, "user=- items=apple")
	}
	// A brand-new session with such a value: not created, no cookie.
	c := newBrowser(t, b.base)
	r := c.post("/unserializable/chan")
	if r.status != 500 || r.setCookie != "" {
		t.Fatalf("new session: %d %q set-cookie %q", r.status, r.body, r.setCookie)
	}
}

func TestServiceUnavailableIsAnErrorNeverANewEmptySession(t *testing.T) {
	up := app(t, newStore(t, gorillastore.Options{}))
	down := app(t, newStore(t, gorillastore.Options{Address: "127.0.0.1:1", Timeout: 500 * time.Millisecond}))
	b := newBrowser(t, up)
	b.post("/items/apple")
	id := b.sid()
	d := &browser{t: t, base: down, c: &http.Client{Timeout: 20 * time.Second}}
	for _, path := range []string{"/", "/items/pear", "/login/eve", "/logout"} {
		method := "POST"
		if path == "/" {
			method = "GET"
		}
		r := d.do(method, path, cookieName+"="+id)
		if r.status != 500 || !strings.Contains(r.body, "error: ") || !strings.Contains(r.body, "Unavailable") {
			t.Fatalf("%s with the service down: %d %q, want 500", path, r.status, r.body)
		}
		if r.setCookie != "" {
			t.Fatalf("%s with the service down set a cookie %q: the user's session would be replaced", path, r.setCookie)
		}
	}
	// A new session: the save fails before any header is written (gorilla's Save runs in the handler).
	r := d.post("/items/x")
	if r.status != 500 || r.setCookie != "" {
		t.Fatalf("new session with the service down: %d %q set-cookie %q", r.status, r.body, r.setCookie)
	}
	// Nothing was written: the session is as it was.
	want(t, b.get("/"), 200, "user=- items=apple")
	if b.sid() != id {
		t.Fatal("the id changed")
	}
}

// The defaults a careless deployment gets are the safe ones: Secure cookies, and no bearer
// token over a plaintext connection.
func TestSafeDefaults(t *testing.T) {
	s, err := gorillastore.NewStore(gorillastore.Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Options.Secure || !s.Options.HttpOnly {
		t.Fatalf("default cookie %+v: want Secure and HttpOnly", *s.Options)
	}
	if _, err := gorillastore.NewStore(gorillastore.Options{Address: addr, Token: "t0ken"}); err == nil ||
		!strings.Contains(err.Error(), "needs TLS") {
		t.Fatalf("a token over plaintext: %v, want refused", err)
	}
	allowed, err := gorillastore.NewStore(gorillastore.Options{Address: addr, Token: "t0ken", AllowTokenOverPlaintext: true})
	if err != nil {
		t.Fatalf("AllowTokenOverPlaintext: %v", err)
	}
	allowed.Close()
}

// valkeyCLI runs valkey-cli against the service's Valkey (with-service.sh's
// SESSION_SERVICE_VALKEY_PORT).
func valkeyCLI(t *testing.T, args ...string) {
	t.Helper()
	port := os.Getenv("SESSION_SERVICE_VALKEY_PORT")
	if port == "" {
		t.Fatal("with-service.sh sets SESSION_SERVICE_VALKEY_PORT")
	}
	if out, err := exec.Command("valkey-cli", append([]string{"-p", port}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("valkey-cli %v: %v %s", args, err, out)
	}
}

// Valkey at its memory limit: a Save and a login are 503 with a clear body, no cookie is written,
// the session keeps what it had; once memory is back the same change succeeds.
func TestStorageFullIsA503AndTheSessionIsKept(t *testing.T) {
	base := app(t, newStore(t, gorillastore.Options{}))
	b := newBrowser(t, base)
	want(t, b.post("/items/apple"), 200, "apple")
	id := b.sid()
	valkeyCLI(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	valkeyCLI(t, "CONFIG", "SET", "maxmemory", "1")
	func() {
		defer valkeyCLI(t, "CONFIG", "SET", "maxmemory", "0")
		want(t, b.get("/"), 200, "user=- items=apple") // reads keep working
		for _, path := range []string{"/items/pear", "/login/eve"} {
			r := b.post(path)
			if r.status != 503 || r.body != gorillastore.StorageFullMessage+"\n" {
				t.Fatalf("%s with Valkey full: %d %q, want 503 %q", path, r.status, r.body, gorillastore.StorageFullMessage)
			}
			if r.setCookie != "" {
				t.Fatalf("%s with Valkey full set a cookie %q", path, r.setCookie)
			}
		}
	}()
	if b.sid() != id {
		t.Fatal("the id changed")
	}
	want(t, b.get("/"), 200, "user=- items=apple")
	want(t, b.post("/items/pear"), 200, "apple,pear")
}

// The Store contract directly: Get caches per request, New/Save/MaxAge < 0, save twice in one request.
func TestStoreContract(t *testing.T) {
	store := newStore(t, gorillastore.Options{})
	r := httptest.NewRequest("GET", "/", nil)
	s1, err := store.Get(r, cookieName)
	if err != nil || !s1.IsNew || s1.ID != "" {
		t.Fatalf("new session: %+v %v", s1, err)
	}
	if s2, _ := store.Get(r, cookieName); s2 != s1 {
		t.Fatal("Get does not return the request's cached session")
	}
	s1.Values["n"] = 1
	w := httptest.NewRecorder()
	if err := s1.Save(r, w); err != nil {
		t.Fatal(err)
	}
	s1.Values["n"] = 2 // a second save in the same request: a Put on the version just written
	if err := s1.Save(r, w); err != nil {
		t.Fatal(err)
	}
	cookie := w.Result().Cookies()[len(w.Result().Cookies())-1]
	r2 := httptest.NewRequest("GET", "/", nil)
	r2.AddCookie(cookie)
	s3, err := store.New(r2, cookieName)
	if err != nil || s3.IsNew || s3.ID != s1.ID || s3.Values["n"] != float64(2) {
		t.Fatalf("reloaded: %+v %v", s3, err)
	}
	got, _ := serviceGet(t, s1.ID)
	if got.GetVersion() != 2 {
		t.Fatalf("version %d, want 2 (Create, Put)", got.GetVersion())
	}
	s3.Options.MaxAge = -1
	if err := store.Save(r2, httptest.NewRecorder(), s3); err != nil {
		t.Fatal(err)
	}
	wantGone(t, s1.ID, "MaxAge < 0")
}
