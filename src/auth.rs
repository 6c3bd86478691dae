//! Access control: roles and what they may do, per-camera scopes, password hashing.
//! The HTTP side (sessions, tokens, lockout) is in api/auth.rs, the tables in
//! store/auth.rs. See docs/api.md "Authentication and access control".

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

/// Who a user or token is. Human roles nest: each can do everything the one before it can
/// (`viewer` ⊂ `operator` ⊂ `installer` ⊂ `admin`). `platform` is for machines: it sees
/// like a viewer and may read the uplink status and metrics, but never reviews or configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Installer,
    Admin,
    Platform,
}

/// What a request needs (the router declares one per operation, see `api::routes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Cameras, events, snapshots, clips, recordings, exports, statistics, the feed.
    See,
    /// Review workflow of events (acknowledge, resolve, false alarm).
    Review,
    /// Box-wide operational status: uplink delivery, Prometheus metrics.
    Monitor,
    /// Cameras, zones and rules (the configuration endpoints, when they exist).
    Configure,
    /// Users, tokens and the audit log.
    Administer,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::See,
        Permission::Review,
        Permission::Monitor,
        Permission::Configure,
        Permission::Administer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::See => "see",
            Permission::Review => "review",
            Permission::Monitor => "monitor",
            Permission::Configure => "configure",
            Permission::Administer => "administer",
        }
    }

    /// Box-wide permissions are refused to principals limited to some cameras.
    pub fn box_wide(self) -> bool {
        matches!(self, Permission::Monitor | Permission::Configure | Permission::Administer)
    }
}

impl Role {
    pub const ALL: [Role; 5] =
        [Role::Viewer, Role::Operator, Role::Installer, Role::Admin, Role::Platform];
    /// Roles a user (a person with a password) may have.
    pub const HUMAN: [Role; 4] = [Role::Viewer, Role::Operator, Role::Installer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Installer => "installer",
            Role::Admin => "admin",
            Role::Platform => "platform",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The one place roles map to permissions (docs/api.md has the same table).
    pub fn can(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Viewer => matches!(p, See),
            Role::Operator => matches!(p, See | Review),
            Role::Installer => matches!(p, See | Review | Monitor | Configure),
            Role::Admin => true,
            Role::Platform => matches!(p, See | Monitor),
        }
    }

    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|p| self.can(*p)).collect()
    }

    pub fn is_human(self) -> bool {
        self != Role::Platform
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit to some cameras: those listed in `cameras`, those whose configured `grid_cell`
/// is listed in `grid_cells`, and events tagged with a listed grid cell. A principal
/// without a scope (`None`) sees every camera. A scope lists at least one camera or cell.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default)]
    pub cameras: Vec<String>,
    #[serde(default)]
    pub grid_cells: Vec<String>,
}

impl Scope {
    /// Sorted, deduplicated; error when empty or when an entry is not a valid id.
    pub fn normalised(mut self) -> Result<Scope, String> {
        for (what, list) in [("cameras", &mut self.cameras), ("grid_cells", &mut self.grid_cells)] {
            for v in list.iter() {
                if v.is_empty()
                    || v.len() > 64
                    || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
                {
                    return Err(format!(
                        "scope.{what}: `{v}` is not a valid id (1–64 letters, digits, '-', '_', '.', ':')"
                    ));
                }
            }
            list.sort();
            list.dedup();
        }
        if self.cameras.is_empty() && self.grid_cells.is_empty() {
            return Err(
                "scope: list at least one camera or grid cell (no scope at all means every camera)"
                    .into(),
            );
        }
        Ok(self)
    }

    /// Parses the comma-separated lists of the command line (`--cameras a,b --grid-cells C3`).
    pub fn from_lists(
        cameras: Option<&str>,
        grid_cells: Option<&str>,
    ) -> Result<Option<Scope>, String> {
        let split = |s: Option<&str>| -> Vec<String> {
            s.map(|s| {
                s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
            })
            .unwrap_or_default()
        };
        if cameras.is_none() && grid_cells.is_none() {
            return Ok(None);
        }
        Scope { cameras: split(cameras), grid_cells: split(grid_cells) }.normalised().map(Some)
    }

    /// `cameras a, b; grid cells C3` (for messages and listings).
    pub fn describe(scope: Option<&Scope>) -> String {
        match scope {
            None => "all cameras".into(),
            Some(s) => {
                let mut parts = Vec::new();
                if !s.cameras.is_empty() {
                    parts.push(format!("cameras {}", s.cameras.join(", ")));
                }
                if !s.grid_cells.is_empty() {
                    parts.push(format!("grid cells {}", s.grid_cells.join(", ")));
                }
                parts.join("; ")
            }
        }
    }
}

/// Longest password accepted (hashing cost must not be a lever for clients).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Usernames: 1–64 of ASCII letters, digits, `.`, `_`, `-`, `@`; compared case-insensitively.
pub fn validate_username(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(format!(
            "username `{name}` is not valid: use 1–64 letters, digits, '.', '_', '-' or '@'"
        ));
    }
    Ok(())
}

/// The password policy: at least `min_len` characters, at most [`MAX_PASSWORD_BYTES`].
pub fn check_password(password: &str, min_len: usize) -> Result<(), String> {
    let n = password.chars().count();
    if n < min_len {
        return Err(format!("the password must have at least {min_len} characters (it has {n})"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("the password must have at most {MAX_PASSWORD_BYTES} bytes"));
    }
    if password.trim().is_empty() {
        return Err("the password must not be blank".into());
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("OS random generator failed: {0}")]
    Random(String),
}

/// Argon2id with the crate's defaults (m = 19 MiB, t = 2, p = 1: OWASP's recommendation),
/// as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) that carries its parameters.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC string (false for a malformed hash).
pub fn verify_password(stored: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Verifies against a fixed hash, so that an unknown username costs as much time as a
/// wrong password (no user enumeration by timing).
pub fn burn_verify(password: &str) {
    use std::sync::OnceLock;
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(h) = DUMMY.get_or_init(|| hash_password("gridwatch-no-such-user").ok()) {
        let _ = verify_password(h, password);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_platform_is_narrow() {
        use Permission::*;
        for p in Permission::ALL {
            // Each human role can do what the one before it can.
            for w in Role::HUMAN.windows(2) {
                assert!(!w[0].can(p) || w[1].can(p), "{} can {p:?} but {} cannot", w[0], w[1]);
            }
        }
        assert_eq!(Role::Viewer.permissions(), [See]);
        assert_eq!(Role::Operator.permissions(), [See, Review]);
        assert_eq!(Role::Installer.permissions(), [See, Review, Monitor, Configure]);
        assert_eq!(Role::Admin.permissions(), Permission::ALL);
        assert_eq!(Role::Platform.permissions(), [See, Monitor]);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn passwords_are_argon2id_salted_and_verified() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password(&a, "correct horse"));
        assert!(!verify_password(&a, "correct horsf"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(!verify_password(&a, &"x".repeat(MAX_PASSWORD_BYTES + 1)));
        burn_verify("anything");
    }

    #[test]
    fn policy_usernames_and_scopes() {
        assert!(check_password("short", 10).unwrap_err().contains("at least 10"));
        assert!(check_password("          ", 10).unwrap_err().contains("blank"));
        assert!(check_password(&"y".repeat(2000), 10).is_err());
        check_password("long enough pw", 10).unwrap();
        validate_username("alice.o-b_2@city").unwrap();
        for bad in ["", "a b", "ä", "x/y", &"n".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
        assert_eq!(Scope::from_lists(None, None).unwrap(), None);
        let s = Scope::from_lists(Some("cam2, cam1,cam2"), None).unwrap().unwrap();
        assert_eq!(
            (s.cameras.as_slice(), s.grid_cells.len()),
            (["cam1".to_string(), "cam2".into()].as_slice(), 0)
        );
        assert!(Scope::from_lists(Some(""), Some(" ")).unwrap_err().contains("at least one"));
        assert!(Scope::from_lists(Some("a b"), None).unwrap_err().contains("`a b`"));
        assert_eq!(
            Scope::describe(Some(&Scope {
                cameras: vec!["a".into()],
                grid_cells: vec!["C3".into()]
            })),
            "cameras a; grid cells C3"
        );
        assert_eq!(Scope::describe(None), "all cameras");
    }
}
