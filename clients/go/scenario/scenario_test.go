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
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionv1 "valkeysessions/gen/session/v1"
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
	if len(s.GetId()) != 43 || s.GetVersion() != 1 || s.GetPrincipal() != "alice" {
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
