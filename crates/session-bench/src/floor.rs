//! `session-floor`: the gRPC floor of the benchmark. The same `SessionService` proto on
//! tonic's defaults, answering from memory with a canned session of the benchmark's shape: what
//! any gRPC session service costs on this machine before it touches Valkey. bench/run.sh measures
//! it with the same generator and settings as the real service and states every row's ratio to it.

use std::{collections::HashMap, net::SocketAddr};

use clap::Parser;
use session_proto::{
    CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse,
    ListSessionsRequest, ListSessionsResponse, PutRequest, PutResponse, RevokeSessionRequest,
    RevokeSessionResponse, RevokeSessionsRequest, RevokeSessionsResponse, RotateRequest,
    RotateResponse, Session,
    session_service_server::{SessionService, SessionServiceServer},
};
use tonic::{Request, Response, Status, transport::Server};

/// Same allocator as the service, so the floor is comparable.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "session-floor",
    about = "In-memory SessionService: the benchmark's gRPC floor"
)]
struct Args {
    /// Listen address.
    #[arg(long, env = "GRPC_LISTEN", default_value = "127.0.0.1:50061")]
    listen: SocketAddr,
    /// Attributes in the canned session.
    #[arg(long, default_value_t = 5)]
    attributes: usize,
    /// Bytes per attribute value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
}

struct Floor {
    session: Session,
}

#[tonic::async_trait]
impl SessionService for Floor {
    async fn create(&self, _: Request<CreateRequest>) -> Result<Response<CreateResponse>, Status> {
        Ok(Response::new(CreateResponse {
            session: Some(self.session.clone()),
        }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let mut session = self.session.clone();
        session.id = request.into_inner().id;
        Ok(Response::new(GetResponse {
            session: Some(session),
        }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let mut session = self.session.clone();
        session.id = request.into_inner().id;
        Ok(Response::new(PutResponse {
            session: Some(session),
        }))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(DeleteResponse { existed: true }))
    }

    async fn rotate(&self, _: Request<RotateRequest>) -> Result<Response<RotateResponse>, Status> {
        Ok(Response::new(RotateResponse {
            session: Some(self.session.clone()),
        }))
    }

    async fn list_sessions(
        &self,
        _: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        Err(Status::unimplemented(
            "the floor answers Create, Get, Put and Delete",
        ))
    }

    async fn revoke_session(
        &self,
        _: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
        Err(Status::unimplemented(
            "the floor answers Create, Get, Put and Delete",
        ))
    }

    async fn revoke_sessions(
        &self,
        _: Request<RevokeSessionsRequest>,
    ) -> Result<Response<RevokeSessionsResponse>, Status> {
        Err(Status::unimplemented(
            "the floor answers Create, Get, Put and Delete",
        ))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let now = prost_types::Timestamp {
        seconds: 1_795_000_000,
        nanos: 0,
    };
    let session = Session {
        id: "AAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        attributes: (0..args.attributes)
            .map(|i| (format!("attr{i}"), vec![b'v'; args.value_size]))
            .collect::<HashMap<_, _>>(),
        principal: String::new(),
        created_at: Some(now),
        last_accessed_at: Some(now),
        expires_at: Some(now),
        idle_timeout: Some(prost_types::Duration {
            seconds: 1800,
            nanos: 0,
        }),
        absolute_expires_at: None,
        version: 1,
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<SessionServiceServer<Floor>>().await;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("session-floor listening on {}", listener.local_addr()?);
    Server::builder()
        .add_service(health)
        .add_service(SessionServiceServer::new(Floor { session }))
        .serve_with_incoming_shutdown(
            // TCP_NODELAY as the service sets it: without it Nagle's algorithm and delayed ACKs
            // stall small responses, and the floor would measure the kernel, not gRPC.
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |conn| {
                    conn.inspect(|stream| {
                        let _ = stream.set_nodelay(true);
                    })
                },
            ),
            service_kit::shutdown::signal(),
        )
        .await?;
    Ok(())
}
