//! Size and count limits on sessions, checked before anything is written.

use serde::{Deserialize, Serialize};

use super::{Attributes, Error, SettingError};

/// Limits on what one session may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest attribute name, in bytes.
    pub max_name_bytes: usize,
    /// Largest attribute value, in bytes.
    pub max_value_bytes: usize,
    /// Largest session: the sum of its attribute names and values, in bytes.
    pub max_session_bytes: usize,
    /// Most attributes in one session.
    pub max_attributes: usize,
    /// Longest principal, in bytes.
    pub max_principal_bytes: usize,
    /// The attributes ListSessions may show (`display_attributes`): a "your devices" page needs
    /// a device name, not the CSRF or OAuth tokens other attributes may hold.
    pub display_attributes: Vec<String>,
}

/// Attributes ListSessions shows unless configured otherwise.
pub const DEFAULT_DISPLAY_ATTRIBUTES: [&str; 5] = ["device", "user_agent", "ip", "location", "app"];

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_name_bytes: 256,
            max_value_bytes: 1 << 20,
            max_session_bytes: 4 << 20,
            max_attributes: 1024,
            max_principal_bytes: 256,
            display_attributes: DEFAULT_DISPLAY_ATTRIBUTES.map(String::from).to_vec(),
        }
    }
}

impl Limits {
    /// Checks that every limit allows something and that sessions stay within what one Valkey
    /// value can reasonably be.
    pub fn check(&self) -> Result<(), SettingError> {
        for (key, value) in [
            ("limits.max_name_bytes", self.max_name_bytes),
            ("limits.max_value_bytes", self.max_value_bytes),
            ("limits.max_session_bytes", self.max_session_bytes),
            ("limits.max_attributes", self.max_attributes),
        ] {
            if value == 0 {
                return Err(SettingError::invalid(key, "must be at least 1"));
            }
        }
        if self.max_session_bytes > 256 << 20 {
            return Err(SettingError::invalid(
                "limits.max_session_bytes",
                "must be at most 256 MiB",
            ));
        }
        Ok(())
    }

    /// Checks each name and value on its own: a bad one is the caller's mistake.
    pub fn check_entries<'a>(
        &self,
        field: &str,
        entries: impl IntoIterator<Item = (&'a String, &'a Vec<u8>)>,
    ) -> Result<(), Error> {
        for (name, value) in entries {
            self.check_name(field, name)?;
            if value.len() > self.max_value_bytes {
                return Err(Error::InvalidArgument(format!(
                    "{field}: value of attribute {:?} is {} bytes, over the limit of {} bytes (max_value_bytes)",
                    truncate(name),
                    value.len(),
                    self.max_value_bytes
                )));
            }
        }
        Ok(())
    }

    /// Checks a name ListSessions is asked to show: a valid name on the display list.
    pub fn check_display(&self, name: &str) -> Result<(), Error> {
        self.check_name("display_attributes", name)?;
        if !self.display_attributes.iter().any(|d| d == name) {
            return Err(Error::InvalidArgument(format!(
                "display_attributes: {:?} is not an attribute ListSessions may show; allowed: {:?} \
                 (limits.display_attributes)",
                truncate(name),
                self.display_attributes
            )));
        }
        Ok(())
    }

    /// Checks one attribute name.
    pub fn check_name(&self, field: &str, name: &str) -> Result<(), Error> {
        if name.is_empty() || name.len() > self.max_name_bytes {
            return Err(Error::InvalidArgument(format!(
                "{field}: attribute names must be 1..={} bytes (max_name_bytes), got {} bytes",
                self.max_name_bytes,
                name.len()
            )));
        }
        Ok(())
    }

    /// Checks a whole session's totals: exceeding them is running out of room.
    pub fn check_totals(&self, attributes: &Attributes) -> Result<(), Error> {
        if attributes.len() > self.max_attributes {
            return Err(self.too_many(attributes.len()));
        }
        let total = attributes.iter().map(|(n, v)| n.len() + v.len()).sum();
        if total > self.max_session_bytes {
            return Err(self.too_large(total));
        }
        Ok(())
    }

    /// Checks the principal.
    pub fn check_principal(&self, principal: &str) -> Result<(), Error> {
        if principal.len() > self.max_principal_bytes {
            return Err(Error::InvalidArgument(format!(
                "principal is {} bytes, over the limit of {} bytes (max_principal_bytes)",
                principal.len(),
                self.max_principal_bytes
            )));
        }
        Ok(())
    }

    /// Largest gRPC message a session under these limits needs: the session plus framing.
    pub fn message_bytes(&self) -> usize {
        self.max_session_bytes + self.max_attributes * 16 + self.max_principal_bytes + 64 * 1024
    }

    /// The element-wise maximum of two sets of limits.
    pub fn max(&self, other: &Self) -> Self {
        Self {
            max_name_bytes: self.max_name_bytes.max(other.max_name_bytes),
            max_value_bytes: self.max_value_bytes.max(other.max_value_bytes),
            max_session_bytes: self.max_session_bytes.max(other.max_session_bytes),
            max_attributes: self.max_attributes.max(other.max_attributes),
            max_principal_bytes: self.max_principal_bytes.max(other.max_principal_bytes),
            display_attributes: {
                let mut all = self.display_attributes.clone();
                all.extend(
                    other
                        .display_attributes
                        .iter()
                        .filter(|d| !self.display_attributes.contains(d))
                        .cloned(),
                );
                all
            },
        }
    }

    /// The error for a session over its attribute count.
    pub fn too_many(&self, count: usize) -> Error {
        Error::LimitExceeded(format!(
            "session would hold {count} attributes, over the limit of {} (max_attributes)",
            self.max_attributes
        ))
    }

    /// The error for a session over its total size.
    pub fn too_large(&self, total: usize) -> Error {
        Error::LimitExceeded(format!(
            "session would hold {total} bytes of attributes, over the limit of {} bytes (max_session_bytes)",
            self.max_session_bytes
        ))
    }
}

/// A name shortened for an error message, so a huge name does not produce a huge message.
fn truncate(name: &str) -> &str {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_totals_are_bounded() {
        let limits = Limits {
            max_name_bytes: 4,
            max_value_bytes: 3,
            max_session_bytes: 8,
            max_attributes: 2,
            max_principal_bytes: 2,
            ..Limits::default()
        };
        let ok = Attributes::from([("a".into(), b"xyz".to_vec())]);
        assert!(limits.check_entries("set", &ok).is_ok());
        let long_name = Attributes::from([("abcde".into(), vec![])]);
        assert!(
            matches!(limits.check_entries("set", &long_name), Err(Error::InvalidArgument(m)) if m.contains("max_name_bytes"))
        );
        let empty_name = Attributes::from([(String::new(), vec![])]);
        assert!(limits.check_entries("set", &empty_name).is_err());
        let big_value = Attributes::from([("a".into(), b"wxyz".to_vec())]);
        assert!(
            matches!(limits.check_entries("set", &big_value), Err(Error::InvalidArgument(m)) if m.contains("max_value_bytes"))
        );
        let three = Attributes::from([
            ("a".into(), vec![]),
            ("b".into(), vec![]),
            ("c".into(), vec![]),
        ]);
        assert!(
            matches!(limits.check_totals(&three), Err(Error::LimitExceeded(m)) if m.contains("max_attributes"))
        );
        let heavy = Attributes::from([
            ("ab".into(), b"xyz".to_vec()),
            ("cd".into(), b"xyz".to_vec()),
        ]);
        assert!(
            matches!(limits.check_totals(&heavy), Err(Error::LimitExceeded(m)) if m.contains("max_session_bytes"))
        );
        assert!(limits.check_principal("abc").is_err());
    }
}
