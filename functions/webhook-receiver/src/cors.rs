//! Origins: which sites may post leads from a browser, and where plain HTML forms may be redirected.

/// A web origin, `scheme://host[:port]`, as the WHATWG URL standard serializes it (lowercase host,
/// punycode, no default port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

/// An absolute http(s) URL without credentials: the only kind the receiver redirects to.
fn web_url(value: &str) -> Option<url::Url> {
    let url = url::Url::parse(value.trim()).ok()?;
    let web = matches!(url.scheme(), "http" | "https")
        && url.has_host()
        && url.username().is_empty()
        && url.password().is_none();
    web.then_some(url)
}

impl Origin {
    /// Parses an origin (an `Origin` header, an `ALLOWED_ORIGINS` item): an http(s) URL with nothing
    /// after the host and port but an optional `/`.
    pub fn parse(value: &str) -> Option<Origin> {
        let url = web_url(value)?;
        let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
        bare.then(|| Origin::of(&url))
    }

    /// The origin of an absolute http(s) URL; `None` for relative URLs, other schemes or userinfo.
    pub fn of_url(value: &str) -> Option<Origin> {
        web_url(value).map(|url| Origin::of(&url))
    }

    fn of(url: &url::Url) -> Origin {
        Origin(url.origin().ascii_serialization())
    }

    /// The origin as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A redirect target that passed the origin check, serialized as parsed (what was checked is what is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTarget {
    pub origin: Origin,
    pub url: String,
}

impl RedirectTarget {
    /// Parses an absolute http(s) URL without credentials.
    pub fn parse(value: &str) -> Option<RedirectTarget> {
        web_url(value).map(|url| RedirectTarget {
            origin: Origin::of(&url),
            url: url.into(),
        })
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

    /// Whether `origin` is named in the list. `*` names no origin: redirect targets must be listed.
    pub fn lists(&self, origin: &Origin) -> bool {
        matches!(self, AllowedOrigins::List(list) if list.contains(origin))
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
        // A backslash ends the host for browsers; the URL parser agrees, so the origin is evil.com.
        assert_eq!(
            Origin::of_url("https://evil.com\\@site.com/")
                .unwrap()
                .as_str(),
            "https://evil.com"
        );
        assert_eq!(
            Origin::of_url("https://SITE.com:443/a").unwrap().as_str(),
            "https://site.com"
        );
    }

    #[test]
    fn an_origin_has_no_path_query_or_credentials() {
        assert!(Origin::parse("https://site.com/path").is_none());
        assert!(Origin::parse("https://site.com?x").is_none());
        assert!(Origin::parse("https://user@site.com").is_none());
        assert!(Origin::parse("https://").is_none());
        assert_eq!(
            Origin::parse("https://site.com:8443").unwrap().as_str(),
            "https://site.com:8443"
        );
    }

    #[test]
    fn a_wildcard_lists_no_origin() {
        let any = AllowedOrigins::parse(&["*".into()]).unwrap();
        let site = Origin::parse("https://site.com").unwrap();
        assert!(any.allows(&site));
        assert!(!any.lists(&site));
        let listed = AllowedOrigins::parse(&["https://site.com".into()]).unwrap();
        assert!(listed.lists(&site));
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
