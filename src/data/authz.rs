//! Authorization phase (DESIGN §2 step 7, §5, §12). In: the request head, the routed service,
//! the snapshot's [`Auth`] (keys, cookie name, leeway), this worker's [`AuthState`] and `now`.
//! Out: the token's `exp` for a secured service, or a 401/403 `Reject` whose label is the
//! metric reason. Never waits: an unknown `kid` only signals the JWKS threads. Never logs or
//! echoes the token.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::data::head::RequestHead;
use crate::data::reject::Reject;
use crate::data::token_cache::TokenCache;
use crate::data::verify::{verify, Verified};
use crate::keys::Auth;
use crate::snapshot::Service;

/// This worker's authorization state: the verified-token cache and when it last asked for an
/// early key refresh.
pub struct AuthState {
    pub cache: RefCell<TokenCache>,
    last_refresh_request: Cell<u64>,
}

impl AuthState {
    pub fn new(cache_capacity: usize) -> AuthState {
        AuthState {
            cache: RefCell::new(TokenCache::new(cache_capacity)),
            last_refresh_request: Cell::new(u64::MAX),
        }
    }
}

/// `Ok(None)`: the service is not secured (tokens are ignored). `Ok(Some(exp))`: a valid token
/// with a matching subscription; `exp` in seconds since the epoch. `now` is seconds since the
/// epoch.
pub fn authorize(
    head: &RequestHead<'_>,
    service: &Service,
    auth: &Auth,
    state: &AuthState,
    now: u64,
) -> Result<Option<u64>, Reject> {
    if !service.secured {
        return Ok(None);
    }
    let token = extract_token(head, auth.cookie_name.as_deref()).ok_or(Reject::Unauthenticated("missing"))?;
    let token = token.map_err(|_| Reject::Unauthenticated("malformed"))?;
    let keys = &auth.keys;
    let cached = state.cache.borrow_mut().get(&token, keys.generation, now);
    let verified = match cached {
        Some(v) => v,
        None => match verify(&token, keys) {
            Ok(v) => {
                let v = Rc::new(v);
                state
                    .cache
                    .borrow_mut()
                    .insert(&token, keys.generation, Rc::clone(&v));
                v
            }
            Err(reason) => {
                if reason == "unknown_key" {
                    request_refresh(auth, state, now);
                }
                return Err(Reject::Unauthenticated(reason));
            }
        },
    };
    check_time(&verified, now, auth.leeway_s).map_err(Reject::Unauthenticated)?;
    if !subscribed(&verified.subscriptions, &service.subscription_groups) {
        return Err(Reject::Forbidden("subscription"));
    }
    Ok(Some(verified.exp))
}

/// Early refresh on an unknown `kid`, at most once per second per worker (the JWKS threads
/// rate-limit further, per source).
fn request_refresh(auth: &Auth, state: &AuthState, now: u64) {
    if state.last_refresh_request.get() == now {
        return;
    }
    state.last_refresh_request.set(now);
    if let Some(signal) = &auth.refresh {
        signal.request();
    }
}

/// `exp` required and in the future, `nbf` (if any) reached, each with `leeway` seconds.
pub fn check_time(v: &Verified, now: u64, leeway: u64) -> Result<(), &'static str> {
    if now >= v.exp.saturating_add(leeway) {
        return Err("expired");
    }
    if let Some(nbf) = v.nbf {
        if now.saturating_add(leeway) < nbf {
            return Err("not_yet_valid");
        }
    }
    Ok(())
}

/// DESIGN §5/§12: the token must share an entry with every `subscription-group` list of the
/// service; a service without lists accepts any valid token. Both sides are normalised.
pub fn subscribed(token: &[String], groups: &[Vec<String>]) -> bool {
    groups
        .iter()
        .all(|list| list.iter().any(|g| token.binary_search(g).is_ok()))
}

/// The token, from the first source that has one (DESIGN §5, §12): `Authorization: Bearer`
/// (scheme case-insensitive; another scheme is not a source), the `access_token` query
/// parameter, the configured cookie. `Some(Err)` for a token that is not text.
pub fn extract_token<'h>(head: &RequestHead<'h>, cookie: Option<&str>) -> Option<Result<Cow<'h, str>, ()>> {
    for value in head.headers_named("authorization") {
        if let Some(t) = bearer(value) {
            return Some(std::str::from_utf8(t).map(Cow::Borrowed).map_err(|_| ()));
        }
    }
    if let Some(t) = query_token(head.target) {
        return Some(Ok(t));
    }
    let name = cookie?;
    for value in head.headers_named("cookie") {
        for pair in value.split(|b| *b == b';') {
            let pair = crate::data::head::trim_ows(pair);
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            if &pair[..eq] == name.as_bytes() {
                let v = &pair[eq + 1..];
                // RFC 6265: a cookie value may be wrapped in double quotes.
                let v = v
                    .strip_prefix(b"\"")
                    .and_then(|s| s.strip_suffix(b"\""))
                    .unwrap_or(v);
                if v.is_empty() {
                    continue;
                }
                return Some(std::str::from_utf8(v).map(Cow::Borrowed).map_err(|_| ()));
            }
        }
    }
    None
}

/// `Bearer <token>` (any case, any amount of blanks) -> the token; `None` for another scheme
/// or an empty token.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let v = crate::data::head::trim_ows(value);
    let scheme_end = v.iter().position(|b| *b == b' ' || *b == b'\t')?;
    if !v[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let t = crate::data::head::trim_ows(&v[scheme_end..]);
    (!t.is_empty()).then_some(t)
}

/// The first non-empty `access_token` query value (key percent-decoded, as the forwarding
/// strips it; value percent-decoded only when it has escapes).
fn query_token(target: &str) -> Option<Cow<'_, str>> {
    let query = target.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    for pair in query.split('&') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        if value.is_empty() || percent_decode(key).as_deref() != Some("access_token") {
            continue;
        }
        return percent_decode(value);
    }
    None
}

fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::head::{parse_request, MAX_HEADERS};

    fn svc(secured: bool, groups: &[&[&str]]) -> Service {
        Service {
            secured,
            subscription_groups: groups
                .iter()
                .map(|l| l.iter().map(|s| s.to_string()).collect())
                .collect(),
            ..Service::for_test("s", "g")
        }
    }

    fn with_head<R>(raw: &str, f: impl FnOnce(&RequestHead<'_>) -> R) -> R {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(raw.as_bytes(), &mut storage).unwrap().unwrap();
        f(&head)
    }

    fn extracted(target: &str, headers: &str, cookie: Option<&str>) -> Option<Result<String, ()>> {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        with_head(&raw, |h| {
            extract_token(h, cookie).map(|r| r.map(|c| c.into_owned()))
        })
    }

    #[test]
    fn token_extraction() {
        let some = |s: &str| Some(Ok(s.to_string()));
        type Case = (
            &'static str,
            &'static str,
            &'static str,
            Option<&'static str>,
            Option<Result<String, ()>>,
        );
        let cases: Vec<Case> = vec![
            ("bearer", "/", "Authorization: Bearer abc\r\n", None, some("abc")),
            (
                "bearer_lower",
                "/",
                "authorization: bearer abc\r\n",
                None,
                some("abc"),
            ),
            (
                "bearer_upper_blanks",
                "/",
                "Authorization:   BEARER \t abc  \r\n",
                None,
                some("abc"),
            ),
            (
                "basic_is_not_a_source",
                "/",
                "Authorization: Basic dXM6cHc=\r\n",
                None,
                None,
            ),
            (
                "basic_then_query",
                "/?access_token=q",
                "Authorization: Basic x\r\n",
                None,
                some("q"),
            ),
            (
                "bearer_empty_then_query",
                "/?access_token=q",
                "Authorization: Bearer \r\n",
                None,
                some("q"),
            ),
            (
                "header_wins_over_query",
                "/?access_token=q",
                "Authorization: Bearer h\r\n",
                None,
                some("h"),
            ),
            (
                "query_middle",
                "/a?x=1&access_token=t.u.v&y=2",
                "",
                None,
                some("t.u.v"),
            ),
            ("query_encoded_key", "/a?access%5Ftoken=t", "", None, some("t")),
            (
                "query_encoded_value",
                "/a?access_token=a%2Eb",
                "",
                None,
                some("a.b"),
            ),
            (
                "query_empty_value",
                "/a?access_token=&access_token=z",
                "",
                None,
                some("z"),
            ),
            ("query_other_key", "/a?access_tokens=t", "", None, None),
            (
                "cookie",
                "/",
                "Cookie: a=1; tok=ck; b=2\r\n",
                Some("tok"),
                some("ck"),
            ),
            (
                "cookie_quoted",
                "/",
                "Cookie: tok=\"ck\"\r\n",
                Some("tok"),
                some("ck"),
            ),
            (
                "cookie_second_header",
                "/",
                "Cookie: a=1\r\nCookie: tok=ck\r\n",
                Some("tok"),
                some("ck"),
            ),
            ("cookie_not_configured", "/", "Cookie: tok=ck\r\n", None, None),
            (
                "cookie_name_prefix",
                "/",
                "Cookie: xtok=ck\r\n",
                Some("tok"),
                None,
            ),
            (
                "query_wins_over_cookie",
                "/?access_token=q",
                "Cookie: tok=ck\r\n",
                Some("tok"),
                some("q"),
            ),
            ("nothing", "/", "", Some("tok"), None),
        ];
        for (name, target, headers, cookie, want) in cases {
            assert_eq!(extracted(target, headers, cookie), want, "case {name}");
        }
        let raw = b"GET / HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n\r\n";
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(raw, &mut storage).unwrap().unwrap();
        assert_eq!(
            extract_token(&head, None).map(|r| r.is_err()),
            Some(true),
            "not text"
        );
    }

    #[test]
    fn subscription_matching() {
        let t = |l: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        let g = |l: &[&[&str]]| -> Vec<Vec<String>> {
            l.iter()
                .map(|x| x.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        type Case = (
            &'static str,
            &'static [&'static str],
            &'static [&'static [&'static str]],
            bool,
        );
        let cases: &[Case] = &[
            ("no_groups_any_token", &[], &[], true),
            ("one_match", &["a", "b"], &[&["b", "c"]], true),
            ("no_match", &["a"], &[&["b", "c"]], false),
            ("empty_claim", &[], &[&["a"]], false),
            ("every_list_must_match", &["a", "x"], &[&["a"], &["x", "y"]], true),
            ("one_list_unmatched", &["a"], &[&["a"], &["x"]], false),
        ];
        for (name, token, groups, want) in cases {
            assert_eq!(subscribed(&t(token), &g(groups)), *want, "case {name}");
        }
    }

    #[test]
    fn time_checks() {
        let v = |exp, nbf| Verified {
            exp,
            nbf,
            subscriptions: vec![],
        };
        type Case = (&'static str, Verified, u64, u64, Result<(), &'static str>);
        let cases: &[Case] = &[
            ("valid", v(100, None), 99, 0, Ok(())),
            ("at_exp", v(100, None), 100, 0, Err("expired")),
            ("leeway_covers_exp", v(100, None), 102, 5, Ok(())),
            ("past_leeway", v(100, None), 105, 5, Err("expired")),
            ("nbf_future", v(100, Some(50)), 40, 0, Err("not_yet_valid")),
            ("nbf_leeway", v(100, Some(50)), 47, 5, Ok(())),
            ("nbf_reached", v(100, Some(50)), 50, 0, Ok(())),
        ];
        for (name, ver, now, leeway, want) in cases {
            assert_eq!(check_time(ver, *now, *leeway), *want, "case {name}");
        }
    }

    #[test]
    fn unsecured_ignores_tokens_secured_fails_closed() {
        let auth = Auth::default();
        let state = AuthState::new(4);
        with_head("GET /?access_token=garbage HTTP/1.1\r\n\r\n", |h| {
            assert_eq!(authorize(h, &svc(false, &[]), &auth, &state, 0), Ok(None));
        });
        let cases: &[(&str, &str, Reject)] = &[
            (
                "missing",
                "GET / HTTP/1.1\r\n\r\n",
                Reject::Unauthenticated("missing"),
            ),
            (
                "garbage",
                "GET /?access_token=garbage HTTP/1.1\r\n\r\n",
                Reject::Unauthenticated("malformed"),
            ),
            (
                "no_keys",
                "GET /?access_token=eyJhbGciOiJSUzI1NiJ9.e30.c2ln HTTP/1.1\r\n\r\n",
                Reject::Unauthenticated("no_keys"),
            ),
        ];
        for (name, raw, want) in cases {
            with_head(raw, |h| {
                assert_eq!(
                    authorize(h, &svc(true, &[]), &auth, &state, 0),
                    Err(*want),
                    "case {name}"
                );
            });
        }
    }

    #[test]
    fn reasons_are_metric_labels() {
        for r in [
            "missing",
            "malformed",
            "signature",
            "expired",
            "not_yet_valid",
            "unknown_key",
            "algorithm",
            "issuer",
            "audience",
            "no_keys",
            "subscription",
        ] {
            assert!(crate::metrics::AUTH_REASONS.contains(&r), "{r}");
        }
    }
}
