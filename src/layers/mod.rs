//! The tower layer around the gRPC routes ([`GateLayer`]: observation, then for the session API
//! authentication, admission and the oversized-message status).

mod admission;
mod gate;
mod observe;
mod oversize;

pub use admission::Admission;
pub use gate::GateLayer;

/// gRPC path prefix of the session API; only these requests are authenticated, limited and
/// deadlined (health Watch and reflection streams are long-lived by design).
const SESSION_PATH: &str = "/session.v1.SessionService/";

#[cfg(test)]
mod tests {
    #[test]
    fn the_session_path_is_the_descriptors_service() {
        assert_eq!(
            super::SESSION_PATH,
            format!("/{}/", session_proto::service_name())
        );
    }
}
