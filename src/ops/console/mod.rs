//! The web console (`GET /ui`, docs/console.md): a page, its script and style, all
//! embedded in the binary (the Runner runs air-gapped: no CDN, no build step). The
//! page holds no data and is served without the token; every call it makes for data
//! goes to `/admin/*` with the token the operator typed in, as a bearer header.
//!
//! Every answer here carries a strict Content-Security-Policy: scripts, styles and
//! calls from this origin only, no inline script or style, no frames, no plugins. So
//! even an escaping mistake in the page could not run a script an event payload
//! carried; the page builds its DOM with `textContent` anyway.

use super::http::Reply;

const PAGE: &str = include_str!("console.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");
const ICON: &str = include_str!("favicon.svg");

/// The headers of every console answer. `default-src 'self'` without `'unsafe-inline'`
/// refuses inline scripts, inline styles and `eval`; `connect-src` falls back to it, so
/// the page calls its own origin only (other shards are links, not calls).
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
];

/// The answer to `GET {path}` under `/ui`, or `None` for a path the console does not
/// serve. `this_shard` is this process's shard name (`tenancy.shard`, may be empty);
/// `shards` the other shards' ops-port URLs (`ops.console_shards`).
pub fn serve(path: &str, this_shard: &str, shards: &[String]) -> Option<Reply> {
    let (content_type, body) = match path {
        "/ui" | "/ui/" => ("text/html; charset=utf-8", PAGE.to_string()),
        "/ui/console.js" => ("text/javascript; charset=utf-8", SCRIPT.to_string()),
        "/ui/console.css" => ("text/css; charset=utf-8", STYLE.to_string()),
        "/ui/favicon.svg" => ("image/svg+xml", ICON.to_string()),
        "/ui/shards" => (
            "application/json",
            serde_json::json!({"this": this_shard, "shards": shards}).to_string(),
        ),
        _ => return None,
    };
    Some(Reply {
        status: 200,
        content_type,
        body,
        headers: SECURITY_HEADERS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    #[test]
    fn every_asset_is_served_with_its_type_and_the_security_headers() {
        for (path, kind) in [
            ("/ui", "text/html"),
            ("/ui/", "text/html"),
            ("/ui/console.js", "text/javascript"),
            ("/ui/console.css", "text/css"),
            ("/ui/favicon.svg", "image/svg+xml"),
            ("/ui/shards", "application/json"),
        ] {
            let reply = serve(path, "", &[]).unwrap_or_else(|| panic!("{path} not served"));
            assert_eq!(reply.status, 200);
            assert!(reply.content_type.starts_with(kind), "{path}");
            assert!(!reply.body.is_empty(), "{path}");
            let csp = header(&reply, "content-security-policy").unwrap_or_default();
            assert!(csp.starts_with("default-src 'self';"), "{path}: {csp}");
            assert!(!csp.contains("unsafe"), "{path}: {csp}");
            assert_eq!(header(&reply, "x-content-type-options"), Some("nosniff"));
        }
        for path in ["/ui/other.js", "/ui/../admin", "/uix", "/ui/console.js/"] {
            assert!(serve(path, "", &[]).is_none(), "{path}");
        }
    }

    #[test]
    fn the_shard_list_is_json_of_the_settings() {
        let shards = vec!["http://runner-b:9090".to_string(), "https://c\"d".into()];
        let reply = serve("/ui/shards", "a", &shards).unwrap();
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"this": "a", "shards": ["http://runner-b:9090", "https://c\"d"]})
        );
    }

    /// Whether `page` has an attribute like ` onclick=`.
    fn has_handler_attribute(page: &str) -> bool {
        page.match_indices(" on").any(|(at, _)| {
            let name: String = page[at + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            !name.is_empty() && page[at + 3 + name.len()..].starts_with('=')
        })
    }

    #[test]
    fn handler_attributes_are_recognised() {
        assert!(has_handler_attribute("<img src=x onerror=alert(1)>"));
        assert!(!has_handler_attribute(
            "<p>Retry on failure</p><option>x</option>"
        ));
    }

    /// The page loads its script and style as files (the policy refuses inline ones)
    /// and names nothing outside its origin.
    #[test]
    fn the_page_has_no_inline_script_or_style_and_no_outside_reference() {
        let page = PAGE.to_ascii_lowercase();
        assert_eq!(
            page.matches("<script").count(),
            page.matches("<script src=\"/ui/console.js\"").count(),
            "every script is the console's file"
        );
        assert!(page.contains("<link rel=\"stylesheet\" href=\"/ui/console.css\">"));
        assert!(!page.contains("<style"), "no inline style element");
        assert!(!page.contains(" style="), "no style attribute");
        assert!(
            !has_handler_attribute(&page),
            "no inline event handler attribute"
        );
        for text in [PAGE, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn"));
        }
    }

    /// Data reaches the DOM as text only, and the token lives in the tab's session.
    #[test]
    fn the_script_never_writes_markup_or_keeps_the_token_beyond_the_session() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "localStorage",
            "document.cookie",
        ] {
            assert!(!SCRIPT.contains(sink), "console.js uses {sink}");
        }
        assert!(SCRIPT.contains("sessionStorage"));
        assert!(SCRIPT.contains("'Bearer '"));
    }
}
