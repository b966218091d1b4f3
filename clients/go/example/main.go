// Example: one session's life through the generated session.v1 stubs.
//
//	SESSION_SERVICE_ADDR=127.0.0.1:50051 go run ./example   (after `. ./env.sh`)
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sessionv1 "github.com/valkey-sessions/valkey-sessions/clients/go/gen/session/v1"
)

func main() {
	addr := os.Getenv("SESSION_SERVICE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:50051"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Plaintext; use grpc.WithTransportCredentials(credentials.NewTLS(...)) for TLS.
	conn, err := grpc.DialContext(ctx, addr, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		log.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	sessions := sessionv1.NewSessionServiceClient(conn)
	health := healthpb.NewHealthClient(conn)

	h, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "session.v1.SessionService"})
	if err != nil {
		log.Fatalf("health: %v", err)
	}
	fmt.Println("health:", h.GetStatus())

	created, err := sessions.Create(ctx, &sessionv1.CreateRequest{
		Attributes:  map[string][]byte{"theme": []byte("dark")},
		Principal:   "alice",
		IdleTimeout: durationpb.New(time.Minute),
	})
	if err != nil {
		log.Fatalf("create: %v", err)
	}
	s := created.GetSession()
	fmt.Printf("created session version %d, expires %s\n", s.GetVersion(), s.GetExpiresAt().AsTime().Format(time.RFC3339))

	read, err := sessions.Get(ctx, &sessionv1.GetRequest{Id: s.GetId()})
	if err != nil {
		log.Fatalf("get: %v", err)
	}
	fmt.Println("theme =", string(read.GetSession().GetAttributes()["theme"]))

	put, err := sessions.Put(ctx, &sessionv1.PutRequest{
		Id:              s.GetId(),
		Set:             map[string][]byte{"cart": []byte("3 items")},
		ExpectedVersion: proto.Uint64(read.GetSession().GetVersion()),
	})
	if err != nil {
		log.Fatalf("put: %v", err)
	}
	fmt.Printf("put -> version %d, %d attributes\n", put.GetSession().GetVersion(), len(put.GetSession().GetAttributes()))

	_, err = sessions.Put(ctx, &sessionv1.PutRequest{
		Id:              s.GetId(),
		Set:             map[string][]byte{"cart": []byte("stale")},
		ExpectedVersion: proto.Uint64(read.GetSession().GetVersion()),
	})
	if status.Code(err) != codes.Aborted {
		log.Fatalf("stale put: want ABORTED, got %v", err)
	}
	fmt.Println("stale put rejected (ABORTED):", status.Convert(err).Message())

	// Login (or privilege change): a new id, the old one is NOT_FOUND from now on.
	rotated, err := sessions.Rotate(ctx, &sessionv1.RotateRequest{Id: s.GetId(), Principal: proto.String("alice")})
	if err != nil {
		log.Fatalf("rotate: %v", err)
	}
	s = rotated.GetSession()
	fmt.Printf("rotated to a new id, version %d\n", s.GetVersion())

	// Where alice is logged in: page after page, each session with a revocation handle (never its id).
	list := &sessionv1.ListSessionsRequest{Principal: "alice", PageSize: 20, DisplayAttributes: []string{"theme"}}
	n := 0
	for {
		page, err := sessions.ListSessions(ctx, list)
		if err != nil {
			log.Fatalf("list sessions: %v", err)
		}
		n += len(page.GetSessions())
		if page.GetNextPageToken() == "" {
			break
		}
		list.PageToken = page.GetNextPageToken()
	}
	fmt.Printf("alice has %d session(s)\n", n)

	del, err := sessions.Delete(ctx, &sessionv1.DeleteRequest{Id: s.GetId()})
	if err != nil {
		log.Fatalf("delete: %v", err)
	}
	fmt.Println("deleted:", del.GetExisted())
}
