//! Profile ids: deterministic, so replays and restarts agree.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of profile ids (UUIDv5).
const PROFILE_NAMESPACE: Uuid = Uuid::from_u128(0x6f6d_6e69_7374_6974_6368_7072_6f66_696c);

/// A unified customer profile id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileId(pub Uuid);

impl ProfileId {
    /// Length of the id's text.
    pub const TEXT_LEN: usize = uuid::fmt::Hyphenated::LENGTH;

    /// The id's text (hyphenated, lower case, as `Display` writes it) in `buf`, written without
    /// the formatting machinery.
    pub fn text<'a>(&self, buf: &'a mut [u8; Self::TEXT_LEN]) -> &'a str {
        self.0.hyphenated().encode_lower(buf)
    }

    /// The id of the profile created by `event_id` of `tenant`: the same inputs give the same id.
    pub fn derive(tenant: &str, event_id: &str) -> Self {
        let mut name = Vec::with_capacity(tenant.len() + event_id.len() + 1);
        name.extend_from_slice(tenant.as_bytes());
        name.push(0x1f);
        name.extend_from_slice(event_id.as_bytes());
        ProfileId(Uuid::new_v5(&PROFILE_NAMESPACE, &name))
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_what_display_writes() {
        let id = ProfileId::derive("acme", "e-1");
        assert_eq!(id.text(&mut [0; ProfileId::TEXT_LEN]), id.to_string());
    }

    #[test]
    fn ids_depend_on_tenant_and_event_only() {
        assert_eq!(ProfileId::derive("acme", "e1"), ProfileId::derive("acme", "e1"));
        assert_ne!(ProfileId::derive("acme", "e1"), ProfileId::derive("globex", "e1"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(ProfileId::derive("ab", "c"), ProfileId::derive("a", "bc"));
    }
}
