//! Browser-facing security of the gateway: whether a request came over HTTPS (so the SESSION
//! cookie is `Secure`), CSRF protection of state-changing requests by their `Origin`, and the
//! headers that keep the page from being framed, sniffed or injected into.

use std::net::IpAddr;

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use axum_extra::extract::cookie::CookieJar;
use base64::Engine;
use ipnet::IpNet;
use sha2::Digest;

use crate::{AppState, PeerAddr, error::ApiError};

/// How the gateway decides that a request came over HTTPS and which origins may change state.
#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    /// Every request is HTTPS: the gateway serves TLS itself, or runs in the cloud profile, or
    /// `GATEWAY_COOKIE_SECURE` says so.
    pub always_https: bool,
    /// Peers whose `X-Forwarded-Proto` (and `X-Forwarded-Host`) are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Origins besides the gateway's own that may send POST, PATCH and DELETE.
    pub allowed_origins: Vec<String>,
}

impl BrowserPolicy {
    fn trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.trusted_proxies.iter().any(|net| net.contains(&ip)))
    }

    /// Whether the browser reached the gateway over HTTPS.
    pub fn is_https(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
        self.always_https
            || (self.trusted(peer)
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")))
    }

    /// The host the browser addressed: `X-Forwarded-Host` from a trusted proxy, else `Host`.
    fn host<'a>(&self, headers: &'a HeaderMap, peer: Option<IpAddr>) -> Option<&'a str> {
        let forwarded = self
            .trusted(peer)
            .then(|| headers.get("x-forwarded-host"))
            .flatten();
        forwarded
            .or_else(|| headers.get(header::HOST))
            .and_then(|v| v.to_str().ok())
    }

    /// Why a state-changing request must be refused, if it must.
    pub fn csrf_violation(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<String> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            // Browsers send Origin on every cross-origin POST/PATCH/DELETE; without one this is
            // a same-origin navigation of an old browser or a non-browser client, unless Fetch
            // Metadata says cross-site.
            let cross_site = headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes() == b"cross-site");
            return cross_site.then(|| "cross-site request without an Origin".to_string());
        };
        let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
        if self.allowed_origins.iter().any(|o| o == origin) {
            return None;
        }
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        match (authority, self.host(headers, peer)) {
            (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => None,
            _ => Some(format!(
                "origin {origin:?} may not change this site's sessions (CSRF protection); \
                 add it to GATEWAY_ALLOWED_ORIGINS if it is yours"
            )),
        }
    }
}

/// Refuses POST, PATCH, PUT and DELETE from a foreign origin with 403.
pub async fn csrf(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let changes_state = matches!(
        *request.method(),
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    );
    if changes_state {
        let peer = peer_ip(request.extensions());
        if let Some(why) = state.policy.csrf_violation(request.headers(), peer) {
            return ApiError::Forbidden(why).into_response();
        }
    }
    next.run(request).await
}

fn peer_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<PeerAddr>>()
        .map(|ConnectInfo(PeerAddr(addr))| addr.ip())
}

/// The request's cookies and whether a cookie set in the answer must be `Secure`.
pub struct Cookies {
    /// The cookie jar.
    pub jar: CookieJar,
    /// The browser came over HTTPS.
    pub secure: bool,
}

impl FromRequestParts<AppState> for Cookies {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let secure = state
            .policy
            .is_https(&parts.headers, peer_ip(&parts.extensions));
        Ok(Self {
            jar: CookieJar::from_headers(&parts.headers),
            secure,
        })
    }
}

/// Parses `GATEWAY_TRUSTED_PROXIES` entries: an address (`10.0.0.7`) or a network (`10.0.0.0/8`).
pub fn parse_proxy(raw: &str) -> Result<IpNet, String> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{raw:?} is not an IP address or network"))
}

/// Headers every response carries: no framing by other sites (clickjacking), no MIME sniffing,
/// no referrer sent elsewhere, and a Content-Security-Policy that lets the page run its own
/// inline script and style (by hash) and nothing else.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(content_security_policy()),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The policy, with the SHA-256 of the page's inline `<script>` and `<style>`.
pub fn content_security_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        let page = include_str!("page.html");
        let hash = |open: &str, close: &str| {
            let start = page.find(open).map(|i| i + open.len()).unwrap_or(0);
            let end = page[start..].find(close).map_or(start, |i| start + i);
            let digest = sha2::Sha256::digest(&page.as_bytes()[start..end]);
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            hash("<script>", "</script>"),
            hash("<style>", "</style>")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn https_is_believed_only_from_trusted_proxies() {
        let policy = BrowserPolicy {
            trusted_proxies: vec![parse_proxy("10.0.0.0/8").unwrap()],
            ..Default::default()
        };
        let https = headers(&[("x-forwarded-proto", "https")]);
        assert!(policy.is_https(&https, Some("10.1.2.3".parse().unwrap())));
        assert!(!policy.is_https(&https, Some("192.168.1.1".parse().unwrap())));
        assert!(!policy.is_https(&headers(&[]), Some("10.1.2.3".parse().unwrap())));
        assert!(parse_proxy("127.0.0.1").is_ok() && parse_proxy("nope").is_err());
    }

    #[test]
    fn foreign_origins_are_refused() {
        let policy = BrowserPolicy {
            allowed_origins: vec!["https://app.example.com".into()],
            ..Default::default()
        };
        let own = headers(&[
            ("host", "todo.example.com"),
            ("origin", "https://todo.example.com"),
        ]);
        assert!(policy.csrf_violation(&own, None).is_none());
        let evil = headers(&[
            ("host", "todo.example.com"),
            ("origin", "https://evil.example"),
        ]);
        assert!(policy.csrf_violation(&evil, None).is_some());
        let null = headers(&[("host", "todo.example.com"), ("origin", "null")]);
        assert!(policy.csrf_violation(&null, None).is_some());
        let allowed = headers(&[
            ("host", "todo.example.com"),
            ("origin", "https://app.example.com"),
        ]);
        assert!(policy.csrf_violation(&allowed, None).is_none());
        assert!(
            policy
                .csrf_violation(&headers(&[("host", "x")]), None)
                .is_none()
        );
        let fetch_meta = headers(&[("host", "x"), ("sec-fetch-site", "cross-site")]);
        assert!(policy.csrf_violation(&fetch_meta, None).is_some());
    }
}
