//! Roles and bearer tokens.
//!
//! The operator provisions one token per party in a tokens file, one `ROLE NAME TOKEN` per
//! line (`#` starts a comment), e.g.
//!
//! ```text
//! server   server-1  3f0c…(at least 32 characters)
//! client   hospital  9a41…
//! operator ops       77d2…
//! ```
//!
//! The authority keeps only each token's SHA-256 and compares a presented token's digest with
//! every entry in constant time. `NAME` becomes the requester id of the audit log.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::coordinator::messages::RequesterId;

/// Minimum length of a token, in characters.
pub const MIN_TOKEN_LEN: usize = 32;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A data owner: public keys and domain creation only.
    Client,
    /// A training or prediction server: public keys and function keys.
    Server,
    /// The authority's operator: everything, including the audit log.
    Operator,
}

impl Role {
    /// The role's name in a tokens file.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Operator => "operator",
        }
    }

    /// The role of a name in a tokens file.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "client" => Some(Role::Client),
            "server" => Some(Role::Server),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its role.
    pub role: Role,
    /// Its name (the audit log's requester id).
    pub requester: RequesterId,
}

struct Entry {
    role: Role,
    requester: RequesterId,
    digest: [u8; 32],
}

/// The provisioned tokens (digests only). `Debug` shows roles and names, never digests.
#[derive(Default)]
pub struct TokenTable {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{}:{}", e.role, e.requester)),
            )
            .finish()
    }
}

/// Why a tokens file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The tokens file may be read by group or others.
    #[error("{path}: mode {mode:o} lets others read the tokens; chmod 600 it")]
    InsecurePermissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl TokenTable {
    /// An empty table (every request is refused).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token for `name` in `role`.
    ///
    /// # Errors
    /// A message if the token is shorter than [`MIN_TOKEN_LEN`] or already provisioned.
    pub fn add(&mut self, role: Role, name: &str, token: &str) -> Result<(), String> {
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token of {name} has {} characters, at least {MIN_TOKEN_LEN} are required",
                token.len()
            ));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self
            .entries
            .iter()
            .any(|e| bool::from(e.digest[..].ct_eq(&digest[..])))
        {
            return Err(format!("the token of {name} is provisioned twice"));
        }
        self.entries.push(Entry {
            role,
            requester: RequesterId::new(name),
            digest,
        });
        Ok(())
    }

    /// Reads a tokens file (format in the [module docs](self)). Like the master seed, it must
    /// not be readable by group or others (mode 0600).
    ///
    /// # Errors
    /// [`TokenError::InsecurePermissions`] for a group- or world-readable file; otherwise
    /// [`TokenError`] naming the file and line.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|source| TokenError::Io {
                    path: shown.clone(),
                    source,
                })?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(TokenError::InsecurePermissions { path: shown, mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut table = Self::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| TokenError::Malformed {
                path: shown.clone(),
                line: i + 1,
                reason,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [role, name, token] = fields.as_slice() else {
                return Err(bad("expected `ROLE NAME TOKEN`".into()));
            };
            let role = Role::from_name(role).ok_or_else(|| {
                bad(format!(
                    "unknown role {role:?} (client, server or operator)"
                ))
            })?;
            table.add(role, name, token).map_err(bad)?;
        }
        Ok(table)
    }

    /// Number of tokens.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is provisioned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller that `token` identifies, if any (constant time in the token).
    #[must_use]
    pub fn lookup(&self, token: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest[..].ct_eq(&digest[..])) {
                found = Some(Caller {
                    role: e.role,
                    requester: e.requester.clone(),
                });
            }
        }
        found
    }

    /// Authenticates the request's bearer token and checks that its role is one of `allowed`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a missing or unknown token, `PERMISSION_DENIED` for a role not in
    /// `allowed` (naming the operation).
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        operation: &str,
        allowed: &[Role],
    ) -> Result<Caller, Status> {
        let header = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("malformed authorization header"))?;
        let caller = self
            .lookup(token)
            .ok_or_else(|| Status::unauthenticated("unknown bearer token"))?;
        if !allowed.contains(&caller.role) {
            return Err(Status::permission_denied(format!(
                "{} ({}) may not call {operation}",
                caller.requester, caller.role
            )));
        }
        Ok(caller)
    }
}

/// A fresh random token: 32 bytes from the operating system's RNG, as 64 hex characters.
#[must_use]
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file_roles_and_refusals() {
        let dir = std::env::temp_dir().join(format!("cryptonn-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        let (s, c) = (random_token(), random_token());
        std::fs::write(
            &path,
            format!("# comment\nserver s1 {s}\nclient c1 {c} # x\n"),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // A group/world-readable tokens file is refused, as the master seed is.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = TokenTable::from_file(&path).unwrap_err();
            assert!(
                matches!(err, TokenError::InsecurePermissions { mode: 0o644, .. }),
                "{err}"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let t = TokenTable::from_file(&path).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(&s).unwrap().role, Role::Server);
        assert_eq!(t.lookup(&c).unwrap().requester, RequesterId::new("c1"));
        assert!(t.lookup("nope").is_none());
        let mut md = MetadataMap::new();
        md.insert("authorization", format!("Bearer {c}").parse().unwrap());
        let err = t
            .authorize(&md, "IssueFeipKeys", &[Role::Server])
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(t.authorize(&md, "GetPublicKey", &[Role::Client]).is_ok());
        let err = t
            .authorize(&MetadataMap::new(), "x", &[Role::Client])
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        std::fs::write(&path, "server s1 short\n").unwrap();
        let err = TokenTable::from_file(&path).unwrap_err();
        assert!(err.to_string().contains(":1:"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
