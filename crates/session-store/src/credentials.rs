//! Credentials for every Valkey connection, new or re-established, primary or replica: a
//! password file re-read per connection (a mounted secret that may rotate), or ElastiCache IAM
//! tokens signed in-process ([`crate::iam`]).

use std::path::PathBuf;

use fred::{error::Error as FredError, error::ErrorKind, types::config::Server};

/// A password read from a file for each new connection, so a rotated secret is picked up by
/// the next (re)connection without a restart.
#[derive(Debug)]
pub struct PasswordFile {
    /// The ACL user, `None` for the default user.
    pub username: Option<String>,
    /// The file holding the password (one trailing newline is ignored).
    pub path: PathBuf,
}

#[async_trait::async_trait]
impl fred::types::config::CredentialProvider for PasswordFile {
    async fn fetch(
        &self,
        _server: Option<&Server>,
    ) -> Result<(Option<String>, Option<String>), FredError> {
        let raw = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            FredError::new(
                ErrorKind::Auth,
                format!("reading VALKEY_PASSWORD_FILE {}: {e}", self.path.display()),
            )
        })?;
        let password = raw
            .strip_suffix('\n')
            .map(|p| p.strip_suffix('\r').unwrap_or(p))
            .unwrap_or(&raw);
        Ok((self.username.clone(), Some(password.to_owned())))
    }
}
