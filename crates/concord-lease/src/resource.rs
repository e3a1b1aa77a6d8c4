//! Resource names: what a lease is on.
//!
//! This module owns the validation of resource names and their bound,
//! [`MAX_RESOURCE_LEN`]. It must never let an unvalidated name into the
//! machines: every [`Resource`], whether built locally or decoded from a
//! peer's message, went through [`Resource::new`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::LeaseError;

/// Longest resource name, in bytes.
pub const MAX_RESOURCE_LEN: usize = 256;

/// The name of a leased resource, e.g. `github.main` or `api.openai`.
///
/// 1 to [`MAX_RESOURCE_LEN`] bytes of UTF-8. Deserializing checks the same
/// rule, so a peer cannot smuggle in an oversized name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Resource(String);

impl Resource {
    /// A resource named `name`.
    ///
    /// # Errors
    /// [`LeaseError::InvalidResource`] if the name is empty or too long.
    pub fn new(name: impl Into<String>) -> Result<Resource, LeaseError> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_RESOURCE_LEN {
            return Err(LeaseError::InvalidResource {
                len: name.len(),
                max: MAX_RESOURCE_LEN,
            });
        }
        Ok(Resource(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Resource {
    type Error = LeaseError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Resource::new(name)
    }
}

impl From<Resource> for String {
    fn from(resource: Resource) -> String {
        resource.0
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded() {
        assert!(Resource::new("a").is_ok());
        assert!(Resource::new("x".repeat(MAX_RESOURCE_LEN)).is_ok());
        assert_eq!(
            Resource::new(""),
            Err(LeaseError::InvalidResource {
                len: 0,
                max: MAX_RESOURCE_LEN
            })
        );
        assert!(Resource::new("x".repeat(MAX_RESOURCE_LEN + 1)).is_err());
    }

    #[test]
    fn deserializing_validates() {
        let ok: Resource = serde_json::from_str("\"api\"").unwrap();
        assert_eq!(ok.as_str(), "api");
        assert_eq!(ok.to_string(), "api");
        let long = format!("\"{}\"", "x".repeat(MAX_RESOURCE_LEN + 1));
        assert!(serde_json::from_str::<Resource>(&long).is_err());
        assert!(serde_json::from_str::<Resource>("\"\"").is_err());
    }
}
