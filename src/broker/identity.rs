//! Who a connection is. The kernel says which uid connected (`SO_PEERCRED`); the request
//! string never carries identity (piped(8), DESCRIPTION).
//!
//! - The service account (`pipe`, whose authorized_keys lines are written by `pipe-admin`)
//!   may assert `--user NAME --key FP`: the admin wrote those words, not the client. The
//!   name is never `root` nor the service account's own: those are Unix accounts with
//!   namespaces of their own, which a key line must not reach (piped(8), DESCRIPTION).
//! - Any other uid is its own Unix user name; asserting a different name is refused.
//! - uid 0 is the admin.

use thiserror::Error;

use crate::request::{Grantee, UserName};

/// The caller, as the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// The key fingerprint the admin's key line named, when there is one.
    pub key: Option<String>,
    pub admin: bool,
    /// The peer's own Unix account (not a name the service account asserted): only such
    /// an identity is looked up in the group database (a drain's `admin_group`).
    pub unix: bool,
}

/// Every identity failure (exit 3): one message, the same for all causes, so a probe learns
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("access denied")]
pub struct Denied;

/// The administrator's account name, which no asserted identity may take.
const ROOT: &str = "root";

/// Resolves the peer. `asserted` is the `(user, key)` a forced command put in the hello.
pub fn resolve(
    uid: u32,
    service_uid: Option<u32>,
    asserted_user: Option<&str>,
    asserted_key: Option<&str>,
) -> Result<Identity, Denied> {
    let own = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or(Denied)?;
    match asserted_user {
        Some(name) if Some(uid) == service_uid => {
            let name = UserName::new(name).map_err(|_| Denied)?;
            if name.as_str() == ROOT || name.as_str() == own {
                return Err(Denied);
            }
            // The key is the admin's too, but grants will match on it: only a well-formed
            // fingerprint is taken.
            if let Some(key) = asserted_key {
                if !matches!(Grantee::parse(key), Some(Grantee::Key(_))) {
                    return Err(Denied);
                }
            }
            Ok(Identity {
                user: name.as_str().to_string(),
                key: asserted_key.map(str::to_string),
                admin: false,
                unix: false,
            })
        }
        Some(name) if name != own => Err(Denied),
        // The service account speaks only for the users its key lines name: a line
        // without `--user` (a foreign or hand-written one) is nobody.
        None if Some(uid) == service_uid => Err(Denied),
        // `public` names the shared namespace; a login of that name would alias it.
        _ if own == "public" => Err(Denied),
        _ => Ok(Identity {
            user: own,
            key: None,
            admin: uid == 0,
            unix: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's uid and user name.
    fn me() -> (u32, String) {
        let uid = nix::unistd::getuid().as_raw();
        let name = nix::unistd::User::from_uid(uid.into())
            .unwrap()
            .unwrap()
            .name;
        (uid, name)
    }

    #[test]
    fn only_the_service_uid_may_assert_a_user() {
        let (me, myname) = me();
        let key = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        let as_service = resolve(me, Some(me), Some("alice"), Some(key)).unwrap();
        assert_eq!(as_service.user, "alice");
        assert_eq!(as_service.key.as_deref(), Some(key));
        assert!(!as_service.admin);
        assert_eq!(
            resolve(me, Some(me), Some("alice"), Some("SHA256:x")),
            Err(Denied)
        );
        assert_eq!(resolve(me, Some(me + 1), Some("alice"), None), Err(Denied));
        assert_eq!(resolve(me, Some(me), None, None), Err(Denied));
        let plain = resolve(me, None, None, None).unwrap();
        assert_eq!(plain.user, myname);
        let same = resolve(me, None, Some(&myname), None).unwrap();
        assert_eq!(same.user, myname);
        assert!(same.unix && !as_service.unix);
    }

    /// Issue 11, defect 4: a key line cannot make its user `root` or the service account.
    #[test]
    fn an_asserted_name_is_never_root_nor_the_service_account() {
        let (me, myname) = me();
        assert_eq!(resolve(me, Some(me), Some("root"), None), Err(Denied));
        assert_eq!(resolve(me, Some(me), Some(&myname), None), Err(Denied));
    }
}
