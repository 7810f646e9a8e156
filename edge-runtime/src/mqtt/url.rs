//! `--mqtt mqtt://[user[:password]@]host[:port][/prefix]` (or `mqtts://`): where the broker is,
//! who we are to it, and the topic prefix. The password is never printed: `Display` and `Debug`
//! show `***` in its place.

use std::fmt;
use std::str::FromStr;

/// The topic prefix when the URL has no path.
pub const DEFAULT_PREFIX: &str = "perch";

#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `mqtts://`: TLS (system roots, or `--mqtt-ca`).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    password: Option<String>,
    /// Topics go under `{prefix}/{name}/`; one or more `/`-separated levels.
    pub prefix: String,
}

impl BrokerUrl {
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Takes the password from the environment (`PERCH_MQTT_PASSWORD`) when the URL has none;
    /// a password in the URL wins.
    pub fn with_password_fallback(mut self, password: Option<String>) -> Self {
        if self.password.is_none() {
            self.password = password.filter(|p| !p.is_empty());
        }
        self
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let auth = match (&self.user, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            (None, Some(_)) => ":***@".to_string(),
            (None, None) => String::new(),
        };
        write!(f, "{scheme}://{auth}{}/{}", self.endpoint(), self.prefix)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

impl FromStr for BrokerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err("expected mqtt://[user[:password]@]host[:port][/prefix] or mqtts://...".into());
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let user = percent_decode(user)?;
                (Some(user).filter(|u| !u.is_empty()), pass.map(percent_decode).transpose()?)
            }
        };
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = split_host_port(hostport, default_port)?;
        if host.is_empty() {
            return Err("the broker host is missing".into());
        }
        let prefix = path.trim_matches('/');
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX.to_string() } else { prefix.to_string() };
        check_topic_levels(&prefix, "the topic prefix")?;
        Ok(BrokerUrl { tls, host, port, user, password, prefix })
    }
}

fn split_host_port(hostport: &str, default_port: u16) -> Result<(String, u16), String> {
    let parse_port =
        |p: &str| p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("invalid port '{p}' (1-65535)"));
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed '[' in an IPv6 host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port,
            None => return Err(format!("unexpected '{after}' after the IPv6 host")),
        };
        return Ok((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), parse_port(port)?)),
        None => Ok((hostport.to_string(), default_port)),
    }
}

/// `%XX` escapes in user names and passwords (`p%40ss` is `p@ss`).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or("a '%' in the user or password must start a %XX escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the user or password is not UTF-8 after %-decoding".to_string())
}

/// MQTT topic levels that perch publishes under: no wildcards, no empty levels, no NUL.
pub fn check_topic_levels(topic: &str, what: &str) -> Result<(), String> {
    if topic.is_empty() || topic.split('/').any(str::is_empty) {
        return Err(format!("{what} '{topic}' has an empty topic level"));
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!("{what} '{topic}' contains an MQTT wildcard (+ or #)"));
    }
    Ok(())
}

/// A device name usable as one topic level and in Home Assistant ids: letters, digits, `-`
/// and `_`; anything else becomes `_` (a host name `pi.local` becomes `pi_local`).
pub fn sanitize_name(name: &str) -> String {
    let s: String =
        name.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if s.is_empty() { "perch".to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_minimal_urls_parse() {
        let u: BrokerUrl = "mqtt://ha:s%40cret@broker.lan:1884/farm/barn".parse().unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "broker.lan", 1884));
        assert_eq!((u.user.as_deref(), u.password()), (Some("ha"), Some("s@cret")));
        assert_eq!(u.prefix, "farm/barn");
        let u: BrokerUrl = "mqtts://10.0.0.2".parse().unwrap();
        assert_eq!((u.tls, u.port, u.prefix.as_str(), u.user.as_deref()), (true, 8883, "perch", None));
        let u: BrokerUrl = "mqtt://[::1]:1999/".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.endpoint()), ("::1", 1999, "[::1]:1999".to_string()));
    }

    #[test]
    fn the_password_is_never_shown() {
        let u: BrokerUrl = "mqtt://user:hunter2@h/p".parse().unwrap();
        for shown in [u.to_string(), format!("{u:?}")] {
            assert!(!shown.contains("hunter2") && shown.contains("user:***@h:1883/p"), "{shown}");
        }
        let from_env = "mqtt://user@h".parse::<BrokerUrl>().unwrap().with_password_fallback(Some("envpw".into()));
        assert_eq!(from_env.password(), Some("envpw"));
        let url_wins = u.with_password_fallback(Some("envpw".into()));
        assert_eq!(url_wins.password(), Some("hunter2"));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (bad, says) in [
            ("tcp://h", "expected mqtt://"),
            ("mqtt://h:0", "invalid port"),
            ("mqtt://h:99999", "invalid port"),
            ("mqtt://:1883", "host is missing"),
            ("mqtt://h/a/+/b", "wildcard"),
            ("mqtt://h/a//b", "empty topic level"),
            ("mqtt://u:%zz@h", "%XX"),
            ("mqtt://[::1", "unclosed"),
        ] {
            let err = bad.parse::<BrokerUrl>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn names_become_one_topic_level() {
        assert_eq!(sanitize_name("pi.local"), "pi_local");
        assert_eq!(sanitize_name("barn-cam_2"), "barn-cam_2");
        assert_eq!(sanitize_name("a/b+#"), "a_b__");
        assert_eq!(sanitize_name("  "), "perch");
    }
}
