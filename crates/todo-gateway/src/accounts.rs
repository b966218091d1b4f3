//! Signing in (a demo: a username, no password) and the signed-in user's sessions as the API
//! shows them: validation of usernames, the device label stored at login, and the JSON shapes.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use session_proto::SessionInfo;

/// The session attribute holding the device label, set at login and listed by ListSessions.
pub const DEVICE_ATTRIBUTE: &str = "device";
/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest device label shown (labels this gateway writes are far shorter; another application
/// may have written a longer one).
const MAX_DEVICE_CHARS: usize = 64;
/// The label of a User-Agent the gateway does not recognise (or of no User-Agent at all).
pub const UNKNOWN_DEVICE: &str = "Unknown browser";

/// A sign-in. A demo without passwords: whoever names a user is that user.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The user to sign in as: 1 to 64 characters of `A-Z a-z 0-9 . _ @ -`.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._@-]{1,64}$",
        example = "alice"
    )]
    pub username: String,
}

/// The signed-in user.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    /// The session's principal: the username signed in with.
    #[schema(example = "alice")]
    pub principal: String,
}

/// One session of the signed-in user (a browser or device where the user is signed in).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Identifies the session for `DELETE /sessions/{handle}`; it cannot be used as a cookie.
    #[schema(pattern = "^[A-Za-z0-9_-]{22}$", example = "q3Vx0m9bWk2YcT5n1L8d7A")]
    pub handle: String,
    /// The browser and system it signed in from, e.g. `Chrome on Linux`.
    #[schema(example = "Firefox on Windows")]
    pub device: String,
    /// Its last write or refreshed read (RFC 3339).
    #[schema(format = DateTime, example = "2025-01-31T09:30:00.000Z")]
    pub last_active: String,
    /// When the session was created (RFC 3339): before the login when the browser had one.
    #[schema(format = DateTime, example = "2025-01-31T09:00:00.000Z")]
    pub created: String,
    /// Whether this is the session of the browser asking.
    pub current: bool,
}

/// The signed-in user and their sessions, most recently active first.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSessions {
    /// The signed-in user.
    #[schema(example = "alice")]
    pub principal: String,
    /// Their sessions, most recently active first (at most 100).
    pub sessions: Vec<SessionView>,
}

/// How many sessions were ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// Sessions revoked.
    pub revoked: u32,
}

/// Accepts 1 to 64 characters of `A-Z a-z 0-9 . _ @ -`.
pub fn check_username(username: &str) -> Result<(), ApiError> {
    let chars = username.chars().count();
    if chars == 0 || chars > MAX_USERNAME_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "username must be 1 to {MAX_USERNAME_CHARS} characters, got {chars}"
        )));
    }
    if !username
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
    {
        return Err(ApiError::Unprocessable(
            "username may only contain A-Z, a-z, 0-9, '.', '_', '@' and '-'".into(),
        ));
    }
    Ok(())
}

/// A short label for the browser behind a User-Agent, such as `Chrome on Linux`: picked from a
/// fixed vocabulary, so it is short and safe to show whatever the header says.
pub fn device_label(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else {
        return UNKNOWN_DEVICE.into();
    };
    let has = |needle: &str| ua.contains(needle);
    // Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
    let browser = if has("Edg/") || has("Edge/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") {
        Some("Opera")
    } else if has("SamsungBrowser/") {
        Some("Samsung Internet")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("Chromium/") {
        Some("Chromium")
    } else if has("Chrome/") || has("CriOS/") {
        Some("Chrome")
    } else if has("Safari/") && has("Version/") {
        Some("Safari")
    } else if ua.starts_with("curl/") {
        Some("curl")
    } else {
        None
    };
    // iOS says "like Mac OS X", Android says Linux, ChromeOS says Linux.
    let system = if has("Windows") {
        Some("Windows")
    } else if has("iPhone") || has("iPad") || has("iPod") {
        Some("iOS")
    } else if has("Android") {
        Some("Android")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Macintosh") || has("Mac OS X") {
        Some("macOS")
    } else if has("Linux") {
        Some("Linux")
    } else {
        None
    };
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.into(),
        (None, Some(system)) => format!("{UNKNOWN_DEVICE} on {system}"),
        (None, None) => UNKNOWN_DEVICE.into(),
    }
}

/// The API's view of a listed session; `own_handle` is the handle of the asking browser's id.
pub fn view(info: SessionInfo, own_handle: &str) -> SessionView {
    let device = info
        .display_attributes
        .get(DEVICE_ATTRIBUTE)
        .map(|bytes| {
            String::from_utf8_lossy(bytes)
                .chars()
                .take(MAX_DEVICE_CHARS)
                .collect::<String>()
        })
        .filter(|label| !label.trim().is_empty())
        .unwrap_or_else(|| UNKNOWN_DEVICE.into());
    SessionView {
        current: info.handle == own_handle,
        handle: info.handle,
        device,
        last_active: rfc3339(info.last_accessed_at),
        created: rfc3339(info.created_at),
    }
}

fn rfc3339(timestamp: Option<prost_types::Timestamp>) -> String {
    let time = timestamp
        .and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_short_and_plain() {
        for good in [
            "alice",
            "a",
            "bob.smith@example.com",
            "x_y-z",
            &"a".repeat(64),
        ] {
            assert!(check_username(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            &"a".repeat(65),
            "al ice",
            "alice\n",
            "ålice",
            "a/b",
            "<script>",
        ] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_agents_become_short_labels() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 HeadlessChrome/131.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            ("curl/8.5.0", "curl"),
            ("", UNKNOWN_DEVICE),
            ("something (Linux)", "Unknown browser on Linux"),
        ];
        for (ua, label) in cases {
            assert_eq!(device_label(Some(ua)), label, "{ua}");
        }
        assert_eq!(device_label(None), UNKNOWN_DEVICE);
        let huge = format!("{} Firefox/1", "x".repeat(10_000));
        assert_eq!(device_label(Some(&huge)), "Firefox");
    }

    #[test]
    fn listed_sessions_are_shown_with_their_label_and_times() {
        let info = SessionInfo {
            handle: "h".repeat(22),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            last_accessed_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_060,
                nanos: 5_000_000,
            }),
            display_attributes: [(DEVICE_ATTRIBUTE.to_owned(), "ü".repeat(100).into_bytes())]
                .into(),
            ..Default::default()
        };
        let shown = view(info, &"h".repeat(22));
        assert!(shown.current);
        assert_eq!(shown.created, "2023-11-14T22:13:20.000Z");
        assert_eq!(shown.last_active, "2023-11-14T22:14:20.005Z");
        assert_eq!(shown.device.chars().count(), MAX_DEVICE_CHARS);
        let bare = view(SessionInfo::default(), "other");
        assert_eq!(
            (bare.device.as_str(), bare.current),
            (UNKNOWN_DEVICE, false)
        );
    }
}
