//! A server to lock, by the name its hook variables carry (the plan builds
//! them from --instance; see plan/instance.rs).

use crate::server::connect::ConnectSpec;
use std::fmt;

/// An instance's name, as its hook variables spell it:
/// `MYSQL_QUIESCE_<NAME>_BINLOG_FILE` (uppercase; every character other than
/// A-Z and 0-9 is `_`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceName(String);

impl InstanceName {
    /// The name for `raw` (None when nothing is left of it).
    pub fn from_raw(raw: &str) -> Option<InstanceName> {
        let name: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        (!name.is_empty()).then_some(InstanceName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server to lock: unnamed (the ordinary options) or an --instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: Option<InstanceName>,
    pub spec: ConnectSpec,
}

impl Instance {
    /// "NAME" or "" (the single unnamed instance), for messages and files.
    pub fn label(&self) -> String {
        self.name
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Its name, or where it is when it has none, for messages.
    pub fn label_or_spec(&self) -> String {
        match &self.name {
            Some(n) => n.to_string(),
            None => self.spec.target.to_string(),
        }
    }

    /// "instance NAME: " or "", before a message about this instance.
    pub fn prefix(&self) -> String {
        match &self.name {
            Some(n) => format!("instance {n}: "),
            None => String::new(),
        }
    }
}
