//! How agents' SIP passwords are kept: as the digest HA1 values of RFC 7616 for MD5 and
//! SHA-256 (`H(username:realm:password)`), stored together in `users.sip_ha1` as
//! `<MD5 hex>:<SHA-256 hex>` — enough to verify a REGISTER, useless as a login password.
//!
//! The hashes depend on the realm, which is configuration (`sip.realm`), but they are computed
//! where the admin API validates a request, which has no configuration at hand. So the realm
//! lives here, process-wide: [`set_realm`] is called once at start-up, before the API serves.
//! Changing the realm invalidates every stored hash (SIP passwords must then be set again).

use std::sync::RwLock;

use vacd_sip::digest::{ha1, Algorithm, Credential};

/// The realm used when none was configured (the `sip.realm` default).
pub const DEFAULT_REALM: &str = "vacd";

static REALM: RwLock<String> = RwLock::new(String::new());

/// Sets the digest realm the API hashes new SIP passwords with.
pub fn set_realm(realm: &str) {
    let mut current = REALM
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    realm.clone_into(&mut current);
}

/// The digest realm (see [`set_realm`]).
pub fn realm() -> String {
    let current = REALM
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if current.is_empty() {
        DEFAULT_REALM.to_owned()
    } else {
        current.clone()
    }
}

/// The stored form of `password` for `username` under the current realm.
pub fn ha1_values(username: &str, password: &str) -> String {
    let realm = realm();
    format!(
        "{}:{}",
        ha1(Algorithm::Md5, username, &realm, password),
        ha1(Algorithm::Sha256, username, &realm, password)
    )
}

/// The digest credential behind a stored `sip_ha1` value; `None` if it is unreadable.
pub fn credential(stored: &str) -> Option<Credential> {
    let (md5, sha256) = stored.split_once(':')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(md5, 32) && hex(sha256, 64)).then(|| Credential::Ha1 {
        md5: Some(md5.to_owned()),
        sha256: Some(sha256.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hashes_round_trip_into_a_credential() {
        let stored = ha1_values("alice", "secret-password");
        let Some(Credential::Ha1 { md5, sha256 }) = credential(&stored) else {
            panic!("readable: {stored}");
        };
        assert_eq!(
            md5.as_deref(),
            Some(ha1(Algorithm::Md5, "alice", &realm(), "secret-password").as_str())
        );
        assert_eq!(sha256.map(|s| s.len()), Some(64));
        assert!(!stored.contains("secret-password"));
    }

    #[test]
    fn garbage_is_no_credential() {
        assert_eq!(credential(""), None);
        assert_eq!(credential("abc:def"), None);
        assert_eq!(credential(&"z".repeat(97)), None);
    }
}
