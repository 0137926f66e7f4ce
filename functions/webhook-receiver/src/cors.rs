//! Origins: which sites may post leads from a browser, and where plain HTML forms may be redirected.

/// A web origin, `scheme://host[:port]`, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// Parses an `Origin` header value. Only http and https origins are accepted.
    pub fn parse(value: &str) -> Option<Origin> {
        let value = value.trim().trim_end_matches('/');
        let lower = value.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))?;
        let valid_host = !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        valid_host.then_some(Origin(lower))
    }

    /// The origin of an absolute http(s) URL; `None` for relative URLs, other schemes or userinfo.
    pub fn of_url(url: &str) -> Option<Origin> {
        let scheme_end = url.find("://")?;
        let authority_start = scheme_end + 3;
        let authority_len = url[authority_start..]
            .find(['/', '?', '#'])
            .unwrap_or(url.len() - authority_start);
        let authority = &url[authority_start..authority_start + authority_len];
        if authority.contains('@') || authority.contains('\\') {
            return None;
        }
        Origin::parse(&url[..authority_start + authority_len])
    }

    /// The origin as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The configured list of allowed origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Nothing configured: no CORS headers; browsers may still post plain forms.
    Unset,
    /// `*`: any origin.
    Any,
    /// Exactly these.
    List(Vec<Origin>),
}

impl AllowedOrigins {
    /// Parses the `ALLOWED_ORIGINS` items.
    pub fn parse(items: &[String]) -> Result<Self, String> {
        if items.is_empty() {
            return Ok(AllowedOrigins::Unset);
        }
        if items.iter().any(|i| i == "*") {
            return Ok(AllowedOrigins::Any);
        }
        items
            .iter()
            .map(|i| {
                Origin::parse(i)
                    .ok_or_else(|| format!("{i:?} is not an http(s) origin like https://site.com"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AllowedOrigins::List)
    }

    /// Whether a request from `origin` may be served.
    pub fn allows(&self, origin: &Origin) -> bool {
        match self {
            AllowedOrigins::Unset => false,
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.contains(origin),
        }
    }

    /// Whether any origin is configured.
    pub fn is_set(&self) -> bool {
        !matches!(self, AllowedOrigins::Unset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_lowercased_and_lose_a_trailing_slash() {
        assert_eq!(
            Origin::parse("HTTPS://Site.com/").unwrap().as_str(),
            "https://site.com"
        );
        assert!(Origin::parse("ftp://site.com").is_none());
        assert!(Origin::parse("null").is_none());
    }

    #[test]
    fn url_origins_refuse_userinfo_tricks() {
        assert_eq!(
            Origin::of_url("https://site.com/obrigado?x=1")
                .unwrap()
                .as_str(),
            "https://site.com"
        );
        assert!(Origin::of_url("https://site.com@evil.com/").is_none());
        assert!(Origin::of_url("/obrigado").is_none());
        assert!(Origin::of_url("javascript:alert(1)").is_none());
    }

    #[test]
    fn the_allowed_list_is_matched_exactly() {
        let allowed = AllowedOrigins::parse(&["https://site.com".into()]).unwrap();
        assert!(allowed.allows(&Origin::parse("https://site.com").unwrap()));
        assert!(!allowed.allows(&Origin::parse("https://evil.com").unwrap()));
        assert!(!allowed.allows(&Origin::parse("http://site.com").unwrap()));
    }

    #[test]
    fn a_malformed_origin_in_the_settings_is_refused() {
        assert!(AllowedOrigins::parse(&["site.com".into()]).is_err());
        assert_eq!(
            AllowedOrigins::parse(&["*".into()]).unwrap(),
            AllowedOrigins::Any
        );
    }
}
