//! Channel paths: `family/name`, e.g. `observation/github.main_head`.
//! This module owns parsing and validation of paths; it never touches a document.

use std::fmt;
use std::str::FromStr;

use crate::StateError;

/// Longest channel name accepted, in bytes.
pub const MAX_CHANNEL_NAME_BYTES: usize = 128;

/// The four channel families of a space (the four-channel pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Mirrors of external state and events agents observed.
    Observation,
    /// Operations agents propose.
    Intent,
    /// Execution queue, conflicts, lock holders, rate limits.
    Coordination,
    /// Audit log of completed operations and errors.
    Execution,
}

impl Family {
    /// All families, in document order.
    pub const ALL: [Family; 4] = [
        Family::Observation,
        Family::Intent,
        Family::Coordination,
        Family::Execution,
    ];

    /// The family's name as used in paths and as the top-level document key.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Observation => "observation",
            Family::Intent => "intent",
            Family::Coordination => "coordination",
            Family::Execution => "execution",
        }
    }

    /// Parses a family name.
    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated channel path: a family and a name made of ASCII letters,
/// digits and `. _ - :` (at most [`MAX_CHANNEL_NAME_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelPath {
    family: Family,
    name: String,
    full: String,
}

impl ChannelPath {
    /// Builds a path from its parts, validating the name.
    pub fn new(family: Family, name: &str) -> Result<Self, StateError> {
        validate_name(name).map_err(|reason| StateError::MalformedPath {
            path: format!("{family}/{name}"),
            reason,
        })?;
        Ok(ChannelPath {
            family,
            name: name.to_owned(),
            full: format!("{family}/{name}"),
        })
    }

    /// The path as `family/name`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The channel's family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The channel's name inside its family.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty channel name");
    }
    if name.len() > MAX_CHANNEL_NAME_BYTES {
        return Err("channel name longer than 128 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return Err("channel names may only hold ASCII letters, digits and . _ - :");
    }
    Ok(())
}

impl FromStr for ChannelPath {
    type Err = StateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = |reason| StateError::MalformedPath {
            path: s.to_owned(),
            reason,
        };
        let (family, name) = s
            .split_once('/')
            .ok_or_else(|| malformed("expected family/name"))?;
        let family = Family::parse(family).ok_or_else(|| {
            malformed("unknown family (observation, intent, coordination, execution)")
        })?;
        ChannelPath::new(family, name)
    }
}

impl fmt::Display for ChannelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// Anything that names a channel: a [`ChannelPath`] or a `&str` to parse.
pub trait IntoChannelPath {
    /// Converts to a validated path.
    fn into_path(self) -> Result<ChannelPath, StateError>;
}

impl IntoChannelPath for &str {
    fn into_path(self) -> Result<ChannelPath, StateError> {
        self.parse()
    }
}

impl IntoChannelPath for &String {
    fn into_path(self) -> Result<ChannelPath, StateError> {
        self.parse()
    }
}

impl IntoChannelPath for ChannelPath {
    fn into_path(self) -> Result<ChannelPath, StateError> {
        Ok(self)
    }
}

impl IntoChannelPath for &ChannelPath {
    fn into_path(self) -> Result<ChannelPath, StateError> {
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_paths() {
        let p: ChannelPath = "observation/github.main_head".parse().unwrap();
        assert_eq!(p.family(), Family::Observation);
        assert_eq!(p.name(), "github.main_head");
        assert_eq!(p.to_string(), "observation/github.main_head");
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in [
            "",
            "observation",
            "observation/",
            "nope/x",
            "intent/a#b",
            "intent/a/b",
            "intent/ spaces",
        ] {
            assert!(
                matches!(
                    bad.parse::<ChannelPath>(),
                    Err(StateError::MalformedPath { .. })
                ),
                "{bad:?} accepted"
            );
        }
        let long = format!("intent/{}", "x".repeat(MAX_CHANNEL_NAME_BYTES + 1));
        assert!(long.parse::<ChannelPath>().is_err());
        let max = format!("intent/{}", "x".repeat(MAX_CHANNEL_NAME_BYTES));
        assert!(max.parse::<ChannelPath>().is_ok());
    }
}
