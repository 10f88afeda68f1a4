//! Who may call in, and which number they called: the policy an INVITE passes before it can
//! become a call. A trunk is recognised by its source address ([`Trunks::by_source`]) or by its
//! digest credentials ([`Trunks::credential`]); the dialled number is the Request-URI's user
//! part, normalised to E.164 ([`dialled_number`]) so it can be looked up among the phone
//! service addresses.

use std::net::IpAddr;

use vacd_sip::digest::Credential;
use vacd_sip::rsip::Request;

use crate::config::TrunkConfig;

/// The configured trunks.
#[derive(Debug, Clone, Default)]
pub struct Trunks {
    trunks: Vec<TrunkConfig>,
}

impl Trunks {
    pub fn new(trunks: Vec<TrunkConfig>) -> Self {
        Self { trunks }
    }

    /// The trunk whose source networks contain `ip`.
    pub fn by_source(&self, ip: IpAddr) -> Option<&str> {
        self.trunks
            .iter()
            .find(|t| t.sources.iter().any(|n| n.contains(ip)))
            .map(|t| t.name.as_str())
    }

    /// Whether any trunk authenticates with digest credentials (then unknown sources are
    /// challenged rather than refused outright).
    pub fn any_credentials(&self) -> bool {
        self.trunks.iter().any(|t| t.username.is_some())
    }

    /// The digest credential of the trunk with this username.
    pub fn credential(&self, username: &str) -> Option<Credential> {
        self.trunks
            .iter()
            .find_map(|t| match (&t.username, &t.password) {
                (Some(u), Some(p)) if u == username => Some(Credential::Password(p.clone())),
                _ => None,
            })
    }

    /// The name of the trunk with this digest username.
    pub fn name_of_user(&self, username: &str) -> Option<&str> {
        self.trunks
            .iter()
            .find(|t| t.username.as_deref() == Some(username))
            .map(|t| t.name.as_str())
    }
}

/// The dialled number of an INVITE in E.164 form (`+4930123456`), from the Request-URI's user
/// part: `+49 30 123456`, `0049-30-123456`, `%2B4930123456` and `4930123456;user=phone` all
/// become `+4930123456`. `None` if the user part is no phone number.
pub fn dialled_number(request: &Request) -> Option<String> {
    let user = request.uri.auth.as_ref()?.user.as_str();
    normalise_e164(user)
}

/// See [`dialled_number`]. National numbers (a single leading 0) cannot be normalised without
/// knowing the country, so they are refused.
pub fn normalise_e164(user: &str) -> Option<String> {
    let user = user.split(';').next().unwrap_or_default();
    let user = user.replace("%2B", "+").replace("%2b", "+");
    let mut digits = String::with_capacity(user.len());
    let mut plus = false;
    for (i, c) in user.chars().enumerate() {
        match c {
            '+' if i == 0 => plus = true,
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    if !plus {
        if let Some(rest) = digits.strip_prefix("00") {
            digits = rest.to_owned();
        } else if digits.starts_with('0') {
            return None;
        }
    }
    // E.164: at most 15 digits, and the country code never starts with 0.
    if digits.is_empty() || digits.len() > 15 || digits.starts_with('0') {
        return None;
    }
    Some(format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Network;

    #[test]
    fn numbers_are_normalised_to_e164() {
        for raw in [
            "+4930123456",
            "4930123456",
            "004930123456",
            "%2B4930123456",
            "+49-30-123456",
            "+49 (30) 123.456",
            "+4930123456;isub=1",
        ] {
            assert_eq!(normalise_e164(raw).as_deref(), Some("+4930123456"), "{raw}");
        }
        for bad in [
            "alice",
            "030123456",
            "",
            "+",
            "+1234567890123456",
            "12a3",
            "+0123",
        ] {
            assert_eq!(normalise_e164(bad), None, "{bad}");
        }
    }

    #[test]
    fn trunks_match_sources_and_credentials() {
        let net = |s: &str| Network::try_from(s.to_owned()).expect("network");
        let trunks = Trunks::new(vec![
            TrunkConfig {
                name: "carrier".into(),
                sources: vec![net("192.0.2.0/24"), net("2001:db8::1")],
                username: None,
                password: None,
                outbound: None,
                outbound_username: None,
                outbound_password: None,
            },
            TrunkConfig {
                name: "roaming".into(),
                sources: vec![],
                username: Some("pbx".into()),
                password: Some("trunk-secret".into()),
                outbound: None,
                outbound_username: None,
                outbound_password: None,
            },
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(trunks.by_source(ip("192.0.2.77")), Some("carrier"));
        assert_eq!(trunks.by_source(ip("::ffff:192.0.2.77")), Some("carrier"));
        assert_eq!(trunks.by_source(ip("2001:db8::1")), Some("carrier"));
        assert_eq!(trunks.by_source(ip("192.0.3.1")), None);
        assert!(trunks.any_credentials());
        assert_eq!(
            trunks.credential("pbx"),
            Some(Credential::Password("trunk-secret".into()))
        );
        assert_eq!(trunks.credential("carrier"), None);
        assert_eq!(trunks.name_of_user("pbx"), Some("roaming"));
    }
}
