//! Field validation that collects every violation with its path, for 422 answers.

use serde::Serialize;

/// One violated field: `source` is its path in the request body (`address.postal_code`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub source: String,
    pub title: String,
}

/// Collects violations while a request is checked; empty means valid.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn new() -> Self {
        Violations(Vec::new())
    }

    pub fn add(&mut self, source: impl Into<String>, title: impl Into<String>) {
        self.0.push(FieldError { source: source.into(), title: title.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was violated, else every violation.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }

    /// A present value, or a "is required" violation.
    pub fn required<T>(&mut self, source: &str, v: Option<T>) -> Option<T> {
        if v.is_none() {
            self.add(source, format!("{source} is required"));
        }
        v
    }

    /// Required text: trimmed, not blank, at most `max` characters.
    pub fn text(&mut self, source: &str, v: Option<String>, max: usize) -> Option<String> {
        match v.map(|s| s.trim().to_owned()) {
            None => {
                self.add(source, format!("{source} is required"));
                None
            }
            Some(s) if s.is_empty() => {
                self.add(source, format!("{source} must not be blank"));
                None
            }
            Some(s) => self.max_len(source, s, max),
        }
    }

    /// Optional text: trimmed, blank counts as absent, at most `max` characters.
    pub fn opt_text(&mut self, source: &str, v: Option<String>, max: usize) -> Option<String> {
        match v.map(|s| s.trim().to_owned()) {
            Some(s) if !s.is_empty() => self.max_len(source, s, max),
            _ => None,
        }
    }

    fn max_len(&mut self, source: &str, s: String, max: usize) -> Option<String> {
        let multiline = is_multiline(source);
        if s.chars().any(is_bidi_control) || (!multiline && s.contains(['\n', '\r', '\t'])) {
            let what = if multiline { "" } else { "one line of " };
            self.add(source, format!("{source} must be {what}text without direction-override characters"));
            None
        } else if s.chars().count() > max {
            self.add(source, format!("{source} must be at most {max} characters"));
            None
        } else {
            Some(s)
        }
    }

    /// Prefixes every violation's source with `prefix.` (for nested objects checked separately).
    pub fn extend_prefixed(&mut self, prefix: &str, errors: Vec<FieldError>) {
        for e in errors {
            self.add(format!("{prefix}.{}", e.source), e.title);
        }
    }
}

/// Fields whose text may run over several lines (by their last name in the path); every other
/// text field is one line: names, addresses, references and numbers end up on payment pages,
/// PDFs and bank files, where a line break or a tab would break them.
pub const MULTILINE_FIELDS: &[&str] = &["description", "comment", "reason", "text"];

fn is_multiline(source: &str) -> bool {
    let last = source.rsplit('.').next().unwrap_or(source);
    let last = last.split('[').next().unwrap_or(last);
    MULTILINE_FIELDS.contains(&last)
}

/// Characters that change the order text is shown in (bidi embeddings, overrides and isolates,
/// U+202A–U+202E, U+2066–U+2069): a name could show as something else. Never accepted.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Free-form JSON stored as given (e.g. `shipping_info`): at most 10,000 characters serialized
/// and nested at most 5 levels deep.
pub fn json_value(v: &mut Violations, source: &str, value: &serde_json::Value) {
    fn depth(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    if value.to_string().chars().count() > 10_000 {
        v.add(source, format!("{source} must be at most 10000 characters as JSON"));
    } else if depth(value) > 5 {
        v.add(source, format!("{source} must be nested at most 5 levels deep"));
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn names_are_one_line_without_direction_overrides() {
        let mut v = Violations::new();
        assert_eq!(v.text("name", Some(" Kunde GmbH ".into()), 50), Some("Kunde GmbH".into()));
        assert_eq!(v.text("name", Some("Kunde\r\nBcc: x".into()), 50), None);
        assert_eq!(v.text("debtor_company.name", Some("evil\u{202E}fdp.exe".into()), 50), None);
        assert_eq!(v.opt_text("line_items[0].title", Some("a\tb".into()), 50), None);
        assert_eq!(v.text("description", Some("first\nsecond".into()), 50), Some("first\nsecond".into()));
        assert_eq!(v.text("line_items[2].description", Some("x\u{2066}y".into()), 50), None);
        let sources: Vec<String> = v.finish().unwrap_err().into_iter().map(|e| e.source).collect();
        assert_eq!(sources, ["name", "debtor_company.name", "line_items[0].title", "line_items[2].description"]);
    }
}

/// A plausible e-mail address: one `@`, a local part, and a dotted domain, no spaces.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
}

/// A phone number: digits with optional leading `+` and separators, 5 to 21 characters.
pub fn is_phone(s: &str) -> bool {
    let len = s.chars().count();
    (5..=21).contains(&len)
        && s.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || matches!(c, ' ' | '-' | '/' | '(' | ')') || (i == 0 && c == '+'))
        && s.chars().filter(char::is_ascii_digit).count() >= 5
}

/// ISO 3166-1 alpha-2 codes of the countries netterms serves (EEA, Switzerland, United Kingdom).
pub const COUNTRIES: &[&str] = &[
    "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR", "HU", "IE", "IS", "IT",
    "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// Postal code shape for a country; countries without a rule accept 2–10 letters, digits, spaces, dashes.
pub fn is_postal_code(country: &str, code: &str) -> bool {
    let digits = |n: usize| code.len() == n && code.chars().all(|c| c.is_ascii_digit());
    match country {
        "DE" | "FR" | "IT" | "ES" | "FI" | "EE" | "HR" => digits(5),
        "AT" | "BE" | "CH" | "DK" | "LU" | "NO" | "SI" | "BG" | "CY" | "HU" | "LI" => digits(4),
        "NL" => {
            let b = code.as_bytes();
            b.len() == 7
                && b[..4].iter().all(u8::is_ascii_digit)
                && b[4] == b' '
                && b[5..].iter().all(u8::is_ascii_uppercase)
        }
        "PL" => {
            let b = code.as_bytes();
            b.len() == 6
                && b[..2].iter().all(u8::is_ascii_digit)
                && b[2] == b'-'
                && b[3..].iter().all(u8::is_ascii_digit)
        }
        _ => (2..=10).contains(&code.len()) && code.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-'),
    }
}

/// Whether `host` is this machine (what sandbox allows over plain http).
fn is_local(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// A URL the buyer's browser may be sent to: absolute https (or http to this machine when
/// `allow_local_http`), a host, no user or password (`http://127.0.0.1:80@evil.example/` is
/// evil.example's), at most 2048 characters. Returns its normalized form, the one that is used.
pub fn redirect_url(s: &str, allow_local_http: bool) -> Option<String> {
    let u = url::Url::parse(s).ok()?;
    let host = u.host()?;
    let scheme_ok = u.scheme() == "https" || (u.scheme() == "http" && allow_local_http && is_local(&host));
    (scheme_ok && u.username().is_empty() && u.password().is_none() && u.as_str().len() <= 2048)
        .then(|| u.as_str().to_owned())
}

/// A web origin: scheme, host and port only (`https://shop.example`, `http://localhost:3000`
/// when `allow_local_http`); no path, query, fragment or user. Returns it serialized as browsers
/// send it in `Origin`.
pub fn web_origin(s: &str, allow_local_http: bool) -> Option<String> {
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    let u = url::Url::parse(trimmed).ok()?;
    let host = u.host()?;
    let scheme_ok = u.scheme() == "https" || (u.scheme() == "http" && allow_local_http && is_local(&host));
    let bare = u.path() == "/"
        && u.query().is_none()
        && u.fragment().is_none()
        && u.username().is_empty()
        && u.password().is_none()
        && !trimmed.ends_with('/');
    let origin = u.origin().ascii_serialization();
    // What was given must already be the origin (not something the parser rewrote into one).
    (scheme_ok && bare && origin.eq_ignore_ascii_case(trimmed)).then_some(origin)
}

/// The origin of an absolute URL as browsers send it in `Origin` (`https://host[:port]`).
pub fn origin_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok().filter(|u| u.host().is_some()).map(|u| u.origin().ascii_serialization())
}

/// An absolute http(s) URL with a host, without spaces.
pub fn is_http_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(char::is_whitespace) && s.len() <= 2048
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_all_violations() {
        let mut v = Violations::new();
        assert_eq!(v.text("name", None, 10), None);
        assert_eq!(v.text("city", Some("   ".into()), 10), None);
        assert_eq!(v.text("street", Some("a".repeat(11)), 10), None);
        assert_eq!(v.text("ok", Some(" x ".into()), 10).as_deref(), Some("x"));
        let errs = v.finish().unwrap_err();
        let sources: Vec<_> = errs.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(sources, ["name", "city", "street"]);
    }

    #[test]
    fn formats() {
        assert!(is_email("a@b.de"));
        assert!(!is_email("a@b"));
        assert!(!is_email("a b@c.de"));
        assert!(is_phone("+49 30 1234567"));
        assert!(!is_phone("12"));
        assert!(is_postal_code("DE", "10115"));
        assert!(!is_postal_code("DE", "1011"));
        assert!(is_postal_code("NL", "1234 AB"));
        assert!(is_http_url("https://shop.example/x"));
        assert!(!is_http_url("ftp://x"));
        assert!(!is_http_url("https://"));
    }

    #[test]
    fn redirect_urls_and_origins_are_what_they_look_like() {
        assert_eq!(
            redirect_url("https://shop.example/ok?x=1#top", false).as_deref(),
            Some("https://shop.example/ok?x=1#top")
        );
        assert!(redirect_url("http://localhost:3000/back", true).is_some());
        assert!(redirect_url("http://localhost:3000/back", false).is_none());
        assert!(redirect_url("http://127.0.0.1:80@evil.example/", true).is_none(), "userinfo hides the real host");
        assert!(redirect_url("https://user:pw@shop.example/", false).is_none());
        assert!(redirect_url("http://localhost.evil.example/", true).is_none());
        assert!(redirect_url("javascript:alert(1)", true).is_none());
        assert!(redirect_url("//shop.example/x", true).is_none());
        assert_eq!(web_origin("https://shop.example", false).as_deref(), Some("https://shop.example"));
        assert_eq!(web_origin("https://Shop.Example/", false).as_deref(), Some("https://shop.example"));
        assert_eq!(web_origin("http://localhost:3000", true).as_deref(), Some("http://localhost:3000"));
        assert!(web_origin("http://localhost.evil.example", true).is_none());
        assert!(web_origin("http://localhost@evil.example", true).is_none());
        assert!(web_origin("https://shop.example/path", false).is_none());
        assert!(web_origin("https://shop.example?x", false).is_none());
        assert!(web_origin("https://shop.example\u{1}", false).is_none());
        assert!(web_origin("https://shop.example\r\nX: y", false).is_none());
        assert!(web_origin("http://shop.example", true).is_none());
        assert_eq!(origin_of("https://API.netterms.example/").as_deref(), Some("https://api.netterms.example"));
        assert_eq!(origin_of("https://pay.example:8443/netterms/").as_deref(), Some("https://pay.example:8443"));
        assert_eq!(origin_of("not a url"), None);
    }
}
