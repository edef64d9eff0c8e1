//! A URL fit for logs and errors: API keys and passwords often travel in it.

/// `url` with user name, password and every query value replaced by `***` (parameter names
/// stay, they say what was asked) and the fragment dropped.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<a URL that does not parse>".into();
    };
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("***");
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        parsed
            .query_pairs_mut()
            .clear()
            .extend_pairs(names.iter().map(|name| (name.as_str(), "***")));
    }
    parsed.set_fragment(None);
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_query_values_but_keep_their_shape() {
        assert_eq!(
            redact_url("https://me:hunter2@api.example.com/v1/items?api_key=s3cr3t&page=2#x"),
            "https://***:***@api.example.com/v1/items?api_key=***&page=***"
        );
        assert_eq!(
            redact_url("https://api.example.com/items"),
            "https://api.example.com/items"
        );
        assert_eq!(redact_url("not a url"), "<a URL that does not parse>");
    }
}
