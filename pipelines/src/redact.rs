//! Credential redaction: [`redact`] hides passwords in anything that may hold a URI
//! before it is shown — log lines, error messages, JSON records, the status API.
//!
//! Cameras take their credentials in the URI (`rtsp://admin:s3cret@10.0.0.5/stream1`) or,
//! on some models, in the query (`?user=admin&password=s3cret`); `gst:` fragments may
//! carry them as element properties (`user-pw=s3cret`). All three are masked with `***`;
//! the user name stays visible (it says which account is configured, and is no secret on
//! its own). The text around them is kept byte for byte, so a redacted error still reads
//! as the original.

/// What replaces a secret.
pub const MASK: &str = "***";

/// Query parameters and element properties whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "user-pw",
    "token",
    "access_token",
    "secret",
    "apikey",
    "api_key",
    "auth",
];

/// `text` with every credential in it masked: the password of each `scheme://user:pass@`
/// authority and the value of each secret `key=value` (query parameter or property).
pub fn redact(text: &str) -> String {
    let masked = mask_userinfo(text);
    mask_secret_values(&masked)
}

/// True when `text` would change under [`redact`].
pub fn has_credentials(text: &str) -> bool {
    redact(text) != text
}

/// Mask `pass` in every `scheme://user:pass@host`.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // the authority ends at the first '/', '?', '#' or whitespace
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon + 1]);
                        out.push_str(MASK);
                    }
                    // a user name alone is no secret, but a bare token is common too
                    None if userinfo.len() > 24 => out.push_str(MASK),
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Mask the value of each `key=value` whose key names a secret.
fn mask_secret_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let key_start = text[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .map(|p| p + 1)
                .unwrap_or(0);
            let key = &text[key_start..i];
            if SECRET_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k)) {
                let quoted = bytes.get(i + 1) == Some(&b'"');
                let value_start = i + 1 + usize::from(quoted);
                let value_end = if quoted {
                    text[value_start..]
                        .find('"')
                        .map(|p| value_start + p)
                        .unwrap_or(text.len())
                } else {
                    text[value_start..]
                        .find(|c: char| matches!(c, '&' | ',' | ';' | '#') || c.is_whitespace())
                        .map(|p| value_start + p)
                        .unwrap_or(text.len())
                };
                if value_end > value_start {
                    out.push_str(&text[copied..value_start]);
                    out.push_str(MASK);
                    copied = value_end;
                    i = value_end;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_userinfo_password() {
        assert_eq!(
            redact("rtsp://admin:s3cret@127.0.0.1:554/cam"),
            "rtsp://admin:***@127.0.0.1:554/cam"
        );
        assert_eq!(
            redact("stream x (rtsp://a:b@h/p): connection lost; retry rtsps://u:p%40ss@h2"),
            "stream x (rtsp://a:***@h/p): connection lost; retry rtsps://u:***@h2"
        );
        // nothing to hide
        for s in [
            "rtsp://127.0.0.1/cam",
            "/videos/a.mp4",
            "test:pattern=ball",
            "",
        ] {
            assert_eq!(redact(s), s);
            assert!(!has_credentials(s));
        }
    }

    #[test]
    fn masks_query_and_property_secrets() {
        assert_eq!(
            redact("rtsp://h/cam?user=admin&password=s3cret&channel=1"),
            "rtsp://h/cam?user=admin&password=***&channel=1"
        );
        assert_eq!(
            redact("gst:rtspsrc location=rtsp://h/x user-id=admin user-pw=s3cret ! decodebin"),
            "gst:rtspsrc location=rtsp://h/x user-id=admin user-pw=*** ! decodebin"
        );
        assert_eq!(redact("token=\"abc def\" x"), "token=\"***\" x");
    }

    #[test]
    fn password_with_at_sign_in_path_is_masked_up_to_the_host() {
        // the last '@' of the authority separates the user info
        assert_eq!(
            redact("rtsp://admin:p@ss@10.0.0.5/live@main"),
            "rtsp://admin:***@10.0.0.5/live@main"
        );
    }
}
