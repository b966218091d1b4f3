// The cross-language scenario against a running service at SESSION_SERVICE_ADDR.
// Same steps as clients/python/tests, clients/typescript and clients/java.
//
//	. ./env.sh && SESSION_SERVICE_ADDR=127.0.0.1:50051 go test -count=1 ./...
package scenario

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionv1 "github.com/valkey-sessions/valkey-sessions/clients/go/gen/session/v1"
)

var (
	conn     *grpc.ClientConn
	sessions sessionv1.SessionServiceClient
	health   healthpb.HealthClient
	binary   = []byte{0, 1, 2, 255}
)

func TestMain(m *testing.M) {
	addr := os.Getenv("SESSION_SERVICE_ADDR")
	if addr == "" {
		println("set SESSION_SERVICE_ADDR=host:port of a running valkey-sessions")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	var err error
	conn, err = grpc.DialContext(ctx, addr, grpc.WithInsecure(), grpc.WithBlock())
	cancel()
	if err != nil {
		println("dial", addr, err.Error())
		os.Exit(2)
	}
	sessions = sessionv1.NewSessionServiceClient(conn)
	health = healthpb.NewHealthClient(conn)
	code := m.Run()
	conn.Close()
	os.Exit(code)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func create(t *testing.T, req *sessionv1.CreateRequest) *sessionv1.Session {
	t.Helper()
	res, err := sessions.Create(ctx(t), req)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id := res.GetSession().GetId()
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = sessions.Delete(c, &sessionv1.DeleteRequest{Id: id})
	})
	return res.GetSession()
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("want %v, got %v (%v)", want, got, err)
	}
}

var currentVersion = regexp.MustCompile(`current version is (\d+)`)

// The id format: an 11-character slot tag, '.', 256 bits as URL-safe base64 without padding.
var idFormat = regexp.MustCompile(`^[^.]{11}\.[A-Za-z0-9_-]{43}$`)

func randomHex(t *testing.T) string {
	raw := make([]byte, 8)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(raw)
}

func listSessions(t *testing.T, req *sessionv1.ListSessionsRequest) *sessionv1.ListSessionsResponse {
	t.Helper()
	res, err := sessions.ListSessions(ctx(t), req)
	if err != nil {
		t.Fatalf("list sessions %v: %v", req, err)
	}
	return res
}

// listAll follows next_page_token to the last page.
func listAll(t *testing.T, req *sessionv1.ListSessionsRequest) []*sessionv1.SessionInfo {
	t.Helper()
	req = proto.Clone(req).(*sessionv1.ListSessionsRequest)
	var all []*sessionv1.SessionInfo
	for {
		res := listSessions(t, req)
		all = append(all, res.GetSessions()...)
		if res.GetNextPageToken() == "" {
			return all
		}
		req.PageToken = res.GetNextPageToken()
	}
}

func devices(infos []*sessionv1.SessionInfo) []string {
	out := make([]string, 0, len(infos))
	for _, info := range infos {
		out = append(out, string(info.GetDisplayAttributes()["device"]))
	}
	return out
}

func TestHealthCheck(t *testing.T) {
	for _, name := range []string{"", "session.v1.SessionService"} {
		res, err := health.Check(ctx(t), &healthpb.HealthCheckRequest{Service: name})
		if err != nil {
			t.Fatalf("check %q: %v", name, err)
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("check %q: %v", name, res.GetStatus())
		}
	}
}

func TestHealthWatchFirstMessageServing(t *testing.T) {
	stream, err := health.Watch(ctx(t), &healthpb.HealthCheckRequest{Service: "session.v1.SessionService"})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatalf("watch recv: %v", err)
	}
	if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v", res.GetStatus())
	}
}

func TestCreateWithAttributesThenGet(t *testing.T) {
	s := create(t, &sessionv1.CreateRequest{
		Attributes:  map[string][]byte{"user": []byte("alice"), "blob": binary},
		Principal:   "alice",
		IdleTimeout: durationpb.New(60 * time.Second),
	})
	if len(s.GetId()) != 55 || !idFormat.MatchString(s.GetId()) || s.GetVersion() != 1 || s.GetPrincipal() != "alice" {
		t.Fatalf("created: id len %d, version %d, principal %q", len(s.GetId()), s.GetVersion(), s.GetPrincipal())
	}
	if s.GetIdleTimeout().AsDuration() != 60*time.Second {
		t.Fatalf("idle timeout %v", s.GetIdleTimeout().AsDuration())
	}
	if !s.GetExpiresAt().AsTime().After(s.GetCreatedAt().AsTime()) {
		t.Fatalf("expires_at %v not after created_at %v", s.GetExpiresAt().AsTime(), s.GetCreatedAt().AsTime())
	}
	for _, c := range []sessionv1.Consistency{sessionv1.Consistency_CONSISTENCY_EVENTUAL, sessionv1.Consistency_CONSISTENCY_STRONG} {
		res, err := sessions.Get(ctx(t), &sessionv1.GetRequest{Id: s.GetId(), Consistency: c})
		if err != nil {
			t.Fatalf("get %v: %v", c, err)
		}
		got := res.GetSession()
		if got.GetId() != s.GetId() || got.GetVersion() != 1 || got.GetPrincipal() != "alice" {
			t.Fatalf("get %v: %v", c, got)
		}
		if string(got.GetAttributes()["user"]) != "alice" || !bytes.Equal(got.GetAttributes()["blob"], binary) || len(got.GetAttributes()) != 2 {
			t.Fatalf("get %v attributes: %v", c, got.GetAttributes())
		}
	}
}

func TestPutWithExpectedVersionThenStalePutAborted(t *testing.T) {
	s := create(t, &sessionv1.CreateRequest{Attributes: map[string][]byte{"user": []byte("alice"), "cart": []byte("empty")}})
	res, err := sessions.Put(ctx(t), &sessionv1.PutRequest{
		Id:              s.GetId(),
		Set:             map[string][]byte{"cart": []byte("3 items")},
		Remove:          []string{"user"},
		ExpectedVersion: proto.Uint64(1),
	})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if v := res.GetSession().GetVersion(); v != 2 {
		t.Fatalf("put version %d", v)
	}
	if a := res.GetSession().GetAttributes(); len(a) != 1 || string(a["cart"]) != "3 items" {
		t.Fatalf("put attributes %v", a)
	}

	_, err = sessions.Put(ctx(t), &sessionv1.PutRequest{
		Id:              s.GetId(),
		Set:             map[string][]byte{"cart": []byte("stale")},
		ExpectedVersion: proto.Uint64(1),
	})
	wantCode(t, err, codes.Aborted)
	m := currentVersion.FindStringSubmatch(status.Convert(err).Message())
	if m == nil {
		t.Fatalf("ABORTED message without the current version: %q", status.Convert(err).Message())
	}
	if v, _ := strconv.ParseUint(m[1], 10, 64); v != 2 {
		t.Fatalf("ABORTED current version %d, want 2", v)
	}

	got, err := sessions.Get(ctx(t), &sessionv1.GetRequest{Id: s.GetId(), Consistency: sessionv1.Consistency_CONSISTENCY_STRONG})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.GetSession().GetVersion() != 2 || string(got.GetSession().GetAttributes()["cart"]) != "3 items" {
		t.Fatalf("after stale put: %v", got.GetSession())
	}

	res, err = sessions.Put(ctx(t), &sessionv1.PutRequest{Id: s.GetId(), Set: map[string][]byte{"n": []byte("1")}})
	if err != nil || res.GetSession().GetVersion() != 3 {
		t.Fatalf("unconditional put: %v %v", res, err)
	}
}

func TestDeleteThenNotFound(t *testing.T) {
	s := create(t, &sessionv1.CreateRequest{Attributes: map[string][]byte{"user": []byte("bob")}})
	del, err := sessions.Delete(ctx(t), &sessionv1.DeleteRequest{Id: s.GetId()})
	if err != nil || !del.GetExisted() {
		t.Fatalf("delete: %v %v", del, err)
	}
	_, err = sessions.Get(ctx(t), &sessionv1.GetRequest{Id: s.GetId(), Consistency: sessionv1.Consistency_CONSISTENCY_STRONG})
	wantCode(t, err, codes.NotFound)
	_, err = sessions.Put(ctx(t), &sessionv1.PutRequest{Id: s.GetId(), Set: map[string][]byte{"a": []byte("b")}})
	wantCode(t, err, codes.NotFound)
	del, err = sessions.Delete(ctx(t), &sessionv1.DeleteRequest{Id: s.GetId()})
	if err != nil || del.GetExisted() {
		t.Fatalf("second delete: %v %v", del, err)
	}
}

func TestUnknownIdNotFoundMalformedIdInvalidArgument(t *testing.T) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	_, err := sessions.Get(ctx(t), &sessionv1.GetRequest{Id: base64.RawURLEncoding.EncodeToString(raw)})
	wantCode(t, err, codes.NotFound)
	_, err = sessions.Get(ctx(t), &sessionv1.GetRequest{Id: "not-a-session-id"})
	wantCode(t, err, codes.InvalidArgument)
}

func TestSessionsOfAUser(t *testing.T) {
	principal := "user-" + randomHex(t) + "@example.com"
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = sessions.RevokeSessions(c, &sessionv1.RevokeSessionsRequest{Principal: principal})
	})
	strong := sessionv1.Consistency_CONSISTENCY_STRONG
	ids := map[string]string{}
	for _, device := range []string{"laptop", "phone", "tablet"} {
		s := create(t, &sessionv1.CreateRequest{
			Attributes: map[string][]byte{"device": []byte(device), "secret": []byte("not listed")},
			Principal:  principal,
		})
		if len(s.GetId()) != 55 || s.GetPrincipal() != principal {
			t.Fatalf("created %s: id len %d, principal %q", device, len(s.GetId()), s.GetPrincipal())
		}
		ids[device] = s.GetId()
		time.Sleep(50 * time.Millisecond) // distinct activity times: the list is newest activity first
	}

	// Two pages of 2 and 1, newest activity first (the last created first).
	first := listSessions(t, &sessionv1.ListSessionsRequest{Principal: principal, PageSize: 2, DisplayAttributes: []string{"device"}})
	if len(first.GetSessions()) != 2 || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %d sessions, next_page_token %q", len(first.GetSessions()), first.GetNextPageToken())
	}
	second := listSessions(t, &sessionv1.ListSessionsRequest{
		Principal: principal, PageSize: 2, PageToken: first.GetNextPageToken(), DisplayAttributes: []string{"device"},
	})
	if len(second.GetSessions()) != 1 || second.GetNextPageToken() != "" {
		t.Fatalf("second page: %d sessions, next_page_token %q", len(second.GetSessions()), second.GetNextPageToken())
	}
	listed := append(append([]*sessionv1.SessionInfo{}, first.GetSessions()...), second.GetSessions()...)
	if got, want := devices(listed), []string{"tablet", "phone", "laptop"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order: got %v, want %v", got, want)
	}
	for i, info := range listed {
		if i > 0 && info.GetLastAccessedAt().AsTime().After(listed[i-1].GetLastAccessedAt().AsTime()) {
			t.Fatalf("not newest activity first: %v", listed)
		}
		if len(info.GetDisplayAttributes()) != 1 || info.GetVersion() != 1 {
			t.Fatalf("session info: %v", info)
		}
		if info.GetCreatedAt() == nil || info.GetLastAccessedAt() == nil ||
			!info.GetExpiresAt().AsTime().After(info.GetCreatedAt().AsTime()) {
			t.Fatalf("session info times: %v", info)
		}
	}
	all := listAll(t, &sessionv1.ListSessionsRequest{Principal: principal, PageSize: 2})
	if len(all) != 3 {
		t.Fatalf("all pages: %d sessions", len(all))
	}
	for i := range all {
		if all[i].GetHandle() != listed[i].GetHandle() {
			t.Fatalf("all pages: handle %d differs", i)
		}
	}

	// A handle revokes, but is not an id: it cannot read the session.
	handles := map[string]string{}
	for _, info := range listed {
		h := info.GetHandle()
		if h == "" || h == ids["laptop"] || h == ids["phone"] || h == ids["tablet"] {
			t.Fatalf("handle %q is empty or an id", h)
		}
		handles[string(info.GetDisplayAttributes()["device"])] = h
		_, err := sessions.Get(ctx(t), &sessionv1.GetRequest{Id: h, Consistency: strong})
		if c := status.Code(err); c != codes.InvalidArgument && c != codes.NotFound {
			t.Fatalf("get by handle: want INVALID_ARGUMENT or NOT_FOUND, got %v (%v)", c, err)
		}
	}
	if len(handles) != 3 {
		t.Fatalf("handles not distinct per device: %v", handles)
	}

	// Log out one device.
	one, err := sessions.RevokeSession(ctx(t), &sessionv1.RevokeSessionRequest{Principal: principal, Handle: handles["phone"]})
	if err != nil || one.GetRevoked() != 1 {
		t.Fatalf("revoke session: %v %v", one, err)
	}
	_, err = sessions.Get(ctx(t), &sessionv1.GetRequest{Id: ids["phone"], Consistency: strong})
	wantCode(t, err, codes.NotFound)

	// Log out everywhere else.
	others, err := sessions.RevokeSessions(ctx(t), &sessionv1.RevokeSessionsRequest{Principal: principal, ExceptId: proto.String(ids["laptop"])})
	if err != nil || others.GetRevoked() != 1 {
		t.Fatalf("revoke sessions: %v %v", others, err)
	}
	_, err = sessions.Get(ctx(t), &sessionv1.GetRequest{Id: ids["tablet"], Consistency: strong})
	wantCode(t, err, codes.NotFound)
	laptop, err := sessions.Get(ctx(t), &sessionv1.GetRequest{Id: ids["laptop"], Consistency: strong})
	if err != nil || string(laptop.GetSession().GetAttributes()["device"]) != "laptop" {
		t.Fatalf("laptop after revoking the others: %v %v", laptop, err)
	}
	left := listSessions(t, &sessionv1.ListSessionsRequest{Principal: principal, DisplayAttributes: []string{"device"}})
	if got := devices(left.GetSessions()); !reflect.DeepEqual(got, []string{"laptop"}) || left.GetNextPageToken() != "" {
		t.Fatalf("left: %v, next_page_token %q", got, left.GetNextPageToken())
	}

	// Bad input: a forged page token; an unknown principal has no sessions.
	_, err = sessions.ListSessions(ctx(t), &sessionv1.ListSessionsRequest{Principal: principal, PageToken: "garbage"})
	wantCode(t, err, codes.InvalidArgument)
	nobody := listSessions(t, &sessionv1.ListSessionsRequest{Principal: "nobody-" + randomHex(t) + "@example.com"})
	if len(nobody.GetSessions()) != 0 || nobody.GetNextPageToken() != "" {
		t.Fatalf("unknown principal: %v", nobody)
	}

	// Login: Rotate an anonymous session to the principal.
	anonymous := create(t, &sessionv1.CreateRequest{Attributes: map[string][]byte{"device": []byte("desktop")}})
	res, err := sessions.Rotate(ctx(t), &sessionv1.RotateRequest{Id: anonymous.GetId(), Principal: proto.String(principal)})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	rotated := res.GetSession()
	newID := rotated.GetId()
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = sessions.Delete(c, &sessionv1.DeleteRequest{Id: newID})
	})
	if len(newID) != 55 || !idFormat.MatchString(newID) || newID == anonymous.GetId() {
		t.Fatalf("rotated id %q (len %d), old id len %d", newID, len(newID), len(anonymous.GetId()))
	}
	if rotated.GetPrincipal() != principal || rotated.GetVersion() != anonymous.GetVersion()+1 ||
		string(rotated.GetAttributes()["device"]) != "desktop" {
		t.Fatalf("rotated: principal %q, version %d, attributes %v", rotated.GetPrincipal(), rotated.GetVersion(), rotated.GetAttributes())
	}
	_, err = sessions.Get(ctx(t), &sessionv1.GetRequest{Id: anonymous.GetId(), Consistency: strong})
	wantCode(t, err, codes.NotFound)
	got, err := sessions.Get(ctx(t), &sessionv1.GetRequest{Id: newID, Consistency: strong})
	if err != nil || got.GetSession().GetPrincipal() != principal {
		t.Fatalf("get rotated: %v %v", got, err)
	}
	now := devices(listSessions(t, &sessionv1.ListSessionsRequest{Principal: principal, DisplayAttributes: []string{"device"}}).GetSessions())
	sort.Strings(now)
	if !reflect.DeepEqual(now, []string{"desktop", "laptop"}) {
		t.Fatalf("after login: %v", now)
	}
}
