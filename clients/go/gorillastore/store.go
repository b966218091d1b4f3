// Package gorillastore is a gorilla/sessions Store on valkey-sessions: an application swaps its
// store and keeps its handlers.
//
//	store, err := gorillastore.NewStore(gorillastore.Options{Address: "sessions.internal:50051"})
//	// was: store := sessions.NewCookieStore(key)  /  redistore.NewRediStore(...)
//	sess, err := store.Get(r, "sid") // err != nil: the service is unreachable; render a 5xx
//	sess.Values["cart"] = []string{"apple"}
//	err = sess.Save(r, w)
//
// How it maps (docs/adapters.md):
//   - Ids: the service chooses the id at the first Save (Create returns it; gorilla lets the store
//     set Session.ID), so there is no proposed id. The cookie carries the id itself (55 URL-safe
//     characters, 256 random bits): no securecookie signing, which would add nothing to an
//     unguessable bearer secret the service validates on every call.
//   - Data: each string key of Values is one service attribute holding its JSON, as in the other
//     adapters, so services in other languages read the same session. A non-string key or a value
//     encoding/json cannot encode is an error from Save, naming the key; nothing is stored. Values
//     come back as encoding/json decodes them (float64, string, bool, []interface{},
//     map[string]interface{}).
//   - Expiry: Options.MaxAge (seconds) is the session's idle timeout, clamped to 1 s ..
//     Options.MaxIdle (default 24 h); MaxAge 0 (a browser-session cookie) uses
//     Options.DefaultIdle; MaxAge < 0 deletes the session (logout) and expires the cookie.
//   - Concurrency: the load remembers the version and values it read; Save sends only the keys
//     that changed, with expected_version. On ABORTED it re-reads, merges three ways (arrays and
//     objects item by item) and retries, so two concurrent requests that each add an item keep
//     both; both setting one scalar to different values is an error, never a silent loss.
//   - Login: Regenerate(r, w, sess, principal) saves the changes and calls Rotate with the
//     principal: a new id, the old id NOT_FOUND, the old cookie finds nothing.
//   - Faults: a cookie that is not an id, an unknown or expired id: a new session, no error. The
//     service unreachable: Get/New return the error (with a new, empty session, as gorilla's
//     Store contract requires a non-nil session) and a Save of that session refuses to write, so
//     the user is never silently logged out. A session deleted elsewhere reads as new; a Save
//     racing the delete is dropped (not resurrected) and the cookie is expired.
//   - Storage full: a Save or Regenerate that Valkey refused for memory returns an error matching
//     ErrStorageFull (errors.Is); the handler answers 503 with StorageFullMessage. No cookie is
//     written, so the browser keeps its session, which is unchanged.
package gorillastore

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/gorilla/sessions"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionv1 "github.com/valkey-sessions/valkey-sessions/clients/go/gen/session/v1"
)

// ConflictRetries is how many times Save re-reads and merges after ABORTED before giving up.
const ConflictRetries = 8

// ErrStorageFull is matched (errors.Is) by the error of a Save or Regenerate that Valkey refused
// because it is at its memory limit (RESOURCE_EXHAUSTED, reason VALKEY_OUT_OF_MEMORY): nothing
// was written and the stored session is intact. Answer 503 with StorageFullMessage and leave
// the cookie alone.
var ErrStorageFull = errors.New("valkey-sessions: session storage is full")

// StorageFullMessage is what to tell a user whose change was refused for memory.
const StorageFullMessage = "session storage is full: your change was not saved and your session is intact; try again later"

// errorDomain is the ErrorInfo domain of the service's reasons.
const errorDomain = "valkey-sessions"

// storageFull wraps err in ErrStorageFull when the service refused the write for memory.
func storageFull(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return err
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain && info.GetReason() == "VALKEY_OUT_OF_MEMORY" {
			return fmt.Errorf("%w: %v", ErrStorageFull, err)
		}
	}
	return err
}

// Options configure a Store. The zero value talks plaintext to 127.0.0.1:50051.
type Options struct {
	// Address is host:port of the service (default 127.0.0.1:50051).
	Address string
	// TLS, when set, is used for the connection (nil: plaintext).
	TLS *tls.Config
	// Token is a bearer token sent with every call: the caller identity, which selects the
	// tenant the sessions live in (there is no tenant field in the API). It is a credential:
	// NewStore refuses it without TLS unless AllowTokenOverPlaintext is set.
	Token string
	// AllowTokenOverPlaintext sends Token over a plaintext connection: only for a loopback
	// sidecar or a network that encrypts by itself (a service mesh).
	AllowTokenOverPlaintext bool
	// Conn is an existing connection to use instead of dialing Address (TLS and Token are then
	// the connection's business).
	Conn *grpc.ClientConn
	// Timeout is the deadline of each call (default 2 s).
	Timeout time.Duration
	// DefaultIdle is the idle timeout of sessions whose cookie has MaxAge 0 (default 24 h).
	DefaultIdle time.Duration
	// MaxIdle is the longest idle timeout sent (default 24 h, the service's default maximum).
	MaxIdle time.Duration
	// Cookie is the default cookie of new sessions (default Path "/", MaxAge 86400, HttpOnly,
	// Secure, SameSite Lax). Session.Options may change it per session. Browsers send a Secure
	// cookie over HTTPS only: plain-HTTP development passes a Cookie with Secure false.
	Cookie *sessions.Options
}

// Store is a gorilla/sessions Store backed by valkey-sessions.
type Store struct {
	// Options is the default cookie configuration, as in gorilla's own stores.
	Options *sessions.Options

	client      sessionv1.SessionServiceClient
	conn        *grpc.ClientConn
	owned       bool
	timeout     time.Duration
	defaultIdle time.Duration
	maxIdle     time.Duration
}

var _ sessions.Store = (*Store)(nil)

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// NewStore connects (lazily: grpc dials in the background) and returns the store.
func NewStore(o Options) (*Store, error) {
	conn, owned := o.Conn, false
	if conn == nil && o.Token != "" && o.TLS == nil && !o.AllowTokenOverPlaintext {
		return nil, errors.New("valkey-sessions: a Token needs TLS (Options.TLS): it would travel in clear; " +
			"set AllowTokenOverPlaintext only where the network encrypts (a loopback sidecar, a mesh)")
	}
	if conn == nil {
		addr := o.Address
		if addr == "" {
			addr = "127.0.0.1:50051"
		}
		var dial []grpc.DialOption
		if o.TLS != nil {
			dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(o.TLS)))
		} else {
			dial = append(dial, grpc.WithInsecure())
		}
		if o.Token != "" {
			dial = append(dial, grpc.WithPerRPCCredentials(bearer(o.Token)))
		}
		var err error
		if conn, err = grpc.Dial(addr, dial...); err != nil {
			return nil, fmt.Errorf("valkey-sessions: dial %s: %w", addr, err)
		}
		owned = true
	}
	s := &Store{
		client:      sessionv1.NewSessionServiceClient(conn),
		conn:        conn,
		owned:       owned,
		timeout:     orDefault(o.Timeout, 2*time.Second),
		defaultIdle: orDefault(o.DefaultIdle, 24*time.Hour),
		maxIdle:     orDefault(o.MaxIdle, 24*time.Hour),
		Options:     &sessions.Options{Path: "/", MaxAge: 86400, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode},
	}
	if o.Cookie != nil {
		c := *o.Cookie
		s.Options = &c
	}
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Close closes the connection the store dialed (not one passed in Options.Conn).
func (s *Store) Close() error {
	if s.owned {
		return s.conn.Close()
	}
	return nil
}

// Client is the underlying session.v1 client (ListSessions, RevokeSessions, ...).
func (s *Store) Client() sessionv1.SessionServiceClient { return s.client }

// state is what the load read, kept per request (in the request's context, like gorilla's
// registry), never in Values.
type state struct {
	version uint64
	base    map[string][]byte // canonical JSON per key, as read or last saved
	idle    time.Duration
	err     error // the load failed: this session must not be saved
}

type ctxKey struct{}

func states(r *http.Request) map[string]*state {
	if m, ok := r.Context().Value(ctxKey{}).(map[string]*state); ok {
		return m
	}
	m := map[string]*state{}
	*r = *r.WithContext(context.WithValue(r.Context(), ctxKey{}, m))
	return m
}

// Get returns the session of this request (cached in gorilla's registry). A non-nil error means
// the session could not be loaded (the service is unreachable or failing): render an error page;
// the returned session is empty and Save refuses it.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New loads the session named by the request's cookie, or returns a new one (IsNew) when there
// is no cookie or it names no session. It never returns a nil session.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	opts := *s.Options
	sess.Options = &opts
	sess.IsNew = true
	st := &state{}
	states(r)[name] = st
	c, err := r.Cookie(name)
	if err != nil || !plausibleID(c.Value) {
		return sess, nil
	}
	got, err := s.read(r.Context(), c.Value)
	if err != nil {
		st.err = err
		return sess, err
	}
	if got == nil {
		return sess, nil // unknown, expired or deleted: a new session
	}
	values, err := decode(got.GetAttributes())
	if err != nil {
		st.err = err
		return sess, err
	}
	for k, v := range values {
		sess.Values[k] = v
	}
	sess.ID = got.GetId()
	sess.IsNew = false
	st.version, st.base, st.idle = got.GetVersion(), canonicalAll(got.GetAttributes()), got.GetIdleTimeout().AsDuration()
	return sess, nil
}

// plausibleID: what the service could accept (22..128 URL-safe characters, `.` for tagged ids);
// anything else is a new session without a call.
func plausibleID(v string) bool {
	if len(v) < 22 || len(v) > 140 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (s *Store) call(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, s.timeout)
}

// read is a strong Get; nil, nil when there is no such session.
func (s *Store) read(parent context.Context, id string) (*sessionv1.Session, error) {
	ctx, cancel := s.call(parent)
	defer cancel()
	res, err := s.client.Get(ctx, &sessionv1.GetRequest{Id: id, Consistency: sessionv1.Consistency_CONSISTENCY_STRONG})
	switch status.Code(err) {
	case codes.OK:
		return res.GetSession(), nil
	case codes.NotFound, codes.InvalidArgument:
		return nil, nil
	}
	return nil, fmt.Errorf("valkey-sessions: loading the session: %w", err)
}

// Save stores the session (Create at the first save, then Put of the changed keys with
// expected_version) and writes the cookie. MaxAge < 0 deletes it.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	if err := s.save(r, sess, ""); err != nil {
		return err
	}
	s.writeCookie(w, sess)
	return nil
}

// Regenerate is the login step gorilla has no built-in for: it saves the session's changes and
// rotates it to a new id with principal set (Rotate; a principal of "" keeps the current one), so
// the id an attacker may have planted or seen before login is NOT_FOUND afterwards. It writes the
// new cookie. A session not saved yet is created with the principal directly.
func (s *Store) Regenerate(r *http.Request, w http.ResponseWriter, sess *sessions.Session, principal string) error {
	if sess.Options != nil && sess.Options.MaxAge < 0 {
		return errors.New("valkey-sessions: Regenerate of a session being deleted (MaxAge < 0)")
	}
	if sess.ID == "" {
		if err := s.save(r, sess, principal); err != nil {
			return err
		}
		s.writeCookie(w, sess)
		return nil
	}
	if err := s.save(r, sess, ""); err != nil {
		return err
	}
	if sess.ID == "" { // deleted elsewhere meanwhile: start a new one for the login
		if err := s.save(r, sess, principal); err != nil {
			return err
		}
		s.writeCookie(w, sess)
		return nil
	}
	req := &sessionv1.RotateRequest{Id: sess.ID}
	if principal != "" {
		req.Principal = proto.String(principal)
	}
	ctx, cancel := s.call(r.Context())
	defer cancel()
	res, err := s.client.Rotate(ctx, req)
	if status.Code(err) == codes.NotFound {
		sess.ID = ""
		return s.Regenerate(r, w, sess, principal)
	}
	if err != nil {
		return fmt.Errorf("valkey-sessions: rotating the session: %w", storageFull(err))
	}
	st := s.stateOf(r, sess)
	sess.ID = res.GetSession().GetId()
	st.version = res.GetSession().GetVersion()
	s.writeCookie(w, sess)
	return nil
}

func (s *Store) writeCookie(w http.ResponseWriter, sess *sessions.Session) {
	opts := sess.Options
	if opts == nil {
		opts = s.Options
	}
	if opts.MaxAge < 0 || sess.ID == "" {
		expired := *opts
		expired.MaxAge = -1
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", &expired))
		return
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), sess.ID, opts))
}

func (s *Store) stateOf(r *http.Request, sess *sessions.Session) *state {
	m := states(r)
	st, ok := m[sess.Name()]
	if !ok {
		st = &state{}
		m[sess.Name()] = st
	}
	return st
}

func (s *Store) idleFor(sess *sessions.Session) time.Duration {
	d := s.defaultIdle
	if sess.Options != nil && sess.Options.MaxAge > 0 {
		d = time.Duration(sess.Options.MaxAge) * time.Second
	}
	if d < time.Second {
		d = time.Second
	}
	if d > s.maxIdle {
		d = s.maxIdle
	}
	return d
}

// save persists sess; principal is only used when it creates the session.
func (s *Store) save(r *http.Request, sess *sessions.Session, principal string) error {
	st := s.stateOf(r, sess)
	if st.err != nil {
		return fmt.Errorf("valkey-sessions: not saving a session that could not be loaded: %w", st.err)
	}
	if sess.Options != nil && sess.Options.MaxAge < 0 {
		if sess.ID != "" {
			ctx, cancel := s.call(r.Context())
			_, err := s.client.Delete(ctx, &sessionv1.DeleteRequest{Id: sess.ID})
			cancel()
			if c := status.Code(err); c != codes.OK && c != codes.NotFound && c != codes.InvalidArgument {
				return fmt.Errorf("valkey-sessions: deleting the session: %w", err)
			}
		}
		sess.ID = ""
		*st = state{}
		return nil
	}
	target, err := encode(sess.Values)
	if err != nil {
		return err
	}
	idle := s.idleFor(sess)
	if sess.ID == "" {
		ctx, cancel := s.call(r.Context())
		defer cancel()
		res, err := s.client.Create(ctx, &sessionv1.CreateRequest{
			Attributes: target, Principal: principal, IdleTimeout: durationpb.New(idle)})
		if err != nil {
			return fmt.Errorf("valkey-sessions: creating the session: %w", storageFull(err))
		}
		sess.ID, sess.IsNew = res.GetSession().GetId(), false
		*st = state{version: res.GetSession().GetVersion(), base: target, idle: idle}
		return nil
	}
	if st.base == nil { // saved without a load in this request (e.g. a session built by hand)
		cur, err := s.read(r.Context(), sess.ID)
		if err != nil {
			return err
		}
		if cur == nil {
			return s.gone(sess, st)
		}
		st.version, st.base, st.idle = cur.GetVersion(), canonicalAll(cur.GetAttributes()), cur.GetIdleTimeout().AsDuration()
	}
	for i := 0; i < ConflictRetries; i++ {
		set := map[string][]byte{}
		for k, v := range target {
			if !bytes.Equal(st.base[k], v) {
				set[k] = v
			}
		}
		var remove []string
		for k := range st.base {
			if _, ok := target[k]; !ok {
				remove = append(remove, k)
			}
		}
		if len(set) == 0 && len(remove) == 0 && idle == st.idle {
			return nil // nothing changed; the read already refreshed the idle timeout
		}
		sort.Strings(remove)
		ctx, cancel := s.call(r.Context())
		res, err := s.client.Put(ctx, &sessionv1.PutRequest{Id: sess.ID, Set: set, Remove: remove,
			ExpectedVersion: proto.Uint64(st.version), IdleTimeout: durationpb.New(idle)})
		cancel()
		switch status.Code(err) {
		case codes.OK:
			*st = state{version: res.GetSession().GetVersion(), base: target, idle: idle}
			return nil
		case codes.NotFound:
			return s.gone(sess, st) // deleted meanwhile (logout elsewhere, revoked, expired)
		case codes.Aborted:
		default:
			return fmt.Errorf("valkey-sessions: saving the session: %w", storageFull(err))
		}
		cur, err := s.read(r.Context(), sess.ID)
		if err != nil {
			return err
		}
		if cur == nil {
			return s.gone(sess, st)
		}
		theirs := canonicalAll(cur.GetAttributes())
		merged := map[string][]byte{}
		for _, k := range keys(st.base, theirs, target) {
			v, err := merge(st.base[k], theirs[k], target[k])
			if err != nil {
				return fmt.Errorf("valkey-sessions: concurrent requests set session key %q to different values; this request's change was not saved", k)
			}
			if v != nil {
				merged[k] = v
			}
		}
		// The handler's session shows what was stored.
		for k := range sess.Values {
			if ks, ok := k.(string); ok {
				if _, keep := merged[ks]; !keep {
					delete(sess.Values, k)
				}
			}
		}
		values, err := decode(merged)
		if err != nil {
			return err
		}
		for k, v := range values {
			sess.Values[k] = v
		}
		target = merged
		st.version, st.base, st.idle = cur.GetVersion(), theirs, cur.GetIdleTimeout().AsDuration()
	}
	return fmt.Errorf("valkey-sessions: still conflicting after %d merges", ConflictRetries)
}

// gone: the session was deleted elsewhere; this save is dropped, never resurrects it, and the
// cookie is expired (the next request starts a new session).
func (s *Store) gone(sess *sessions.Session, st *state) error {
	sess.ID = ""
	*st = state{}
	return nil
}

func keys(ms ...map[string][]byte) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// canonical re-encodes JSON with encoding/json's rules (sorted object keys, compact), so equal
// values have equal bytes whichever language wrote them.
func canonical(raw []byte) ([]byte, error) {
	var v interface{}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func canonicalAll(attrs map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(attrs))
	for k, v := range attrs {
		if c, err := canonical(v); err == nil {
			out[k] = c
		} else {
			out[k] = v
		}
	}
	return out
}

// encode: one attribute per string key, holding its JSON.
func encode(values map[interface{}]interface{}) (map[string][]byte, error) {
	out := make(map[string][]byte, len(values))
	for k, v := range values {
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("valkey-sessions: session key %#v is a %T, not a string: each key is one service attribute, so only string keys can be stored", k, k)
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("valkey-sessions: session key %q cannot be serialized to JSON: %v", ks, err)
		}
		if out[ks], err = canonical(raw); err != nil {
			return nil, fmt.Errorf("valkey-sessions: session key %q cannot be serialized to JSON: %v", ks, err)
		}
	}
	return out, nil
}

func decode(attrs map[string][]byte) (map[string]interface{}, error) {
	out := make(map[string]interface{}, len(attrs))
	for k, raw := range attrs {
		var v interface{}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("valkey-sessions: session attribute %q is not JSON", k)
		}
		out[k] = v
	}
	return out, nil
}

var errConflict = errors.New("conflict")

// merge is the three-way merge of one value changed concurrently (nil = absent; values are
// canonical JSON): the same rules as the other adapters.
func merge(base, theirs, mine []byte) ([]byte, error) {
	eq := func(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }
	if eq(mine, base) {
		return theirs, nil
	}
	if eq(theirs, base) || eq(theirs, mine) {
		return mine, nil
	}
	var ta, ma []json.RawMessage
	if json.Unmarshal(theirs, &ta) == nil && json.Unmarshal(mine, &ma) == nil && ta != nil && ma != nil {
		var ba []json.RawMessage
		_ = json.Unmarshal(base, &ba)
		has := func(list []json.RawMessage, v json.RawMessage) bool {
			for _, x := range list {
				if bytes.Equal(x, v) {
					return true
				}
			}
			return false
		}
		out := []json.RawMessage{}
		for _, v := range ta {
			if !has(ba, v) || has(ma, v) {
				out = append(out, v)
			}
		}
		for _, v := range ma {
			if !has(ba, v) && !has(out, v) {
				out = append(out, v)
			}
		}
		return json.Marshal(out)
	}
	var to, mo map[string]json.RawMessage
	if json.Unmarshal(theirs, &to) == nil && json.Unmarshal(mine, &mo) == nil && to != nil && mo != nil {
		var bo map[string]json.RawMessage
		_ = json.Unmarshal(base, &bo)
		out := map[string]json.RawMessage{}
		for _, k := range keys(raws(bo), raws(to), raws(mo)) {
			v, err := merge(bo[k], to[k], mo[k])
			if err != nil {
				return nil, err
			}
			if v != nil {
				out[k] = v
			}
		}
		return json.Marshal(out)
	}
	return nil, errConflict
}

func raws(m map[string]json.RawMessage) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
