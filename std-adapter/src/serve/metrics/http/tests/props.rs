//! Any bytes, cut anywhere, against any bound: the endpoint reads on only
//! while what came could still begin a head under `max_request` bytes;
//! otherwise it answers with one whole HTTP/1.1 response whose
//! `Content-Length` is its body's (no body to `HEAD`), and never panics.

use proptest::prelude::*;

use super::*;

/// A request that is answered 200, one byte replaced and cut short anywhere,
/// or bytes of any kind.
fn request_like() -> impl Strategy<Value = Vec<u8>> {
    let valid = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n".to_vec();
    let len = valid.len();
    prop_oneof![
        (0..=len, 0..len, any::<u8>()).prop_map(move |(cut, at, byte)| {
            let mut v = valid.clone();
            v[at] = byte;
            v.truncate(cut);
            v
        }),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #[test]
    fn any_bytes_get_a_read_on_under_the_bound_or_one_whole_response(
        input in request_like(),
        max_request in 1usize..128,
    ) {
        let s = stats();
        let Some(r) = respond(&input, max_request, &s) else {
            prop_assert!(input.len() < max_request, "read on past the bound");
            return Ok(());
        };
        let text = String::from_utf8_lossy(&r).into_owned();
        let status = status(&r);
        prop_assert!(
            ["200", "400", "404", "405", "431"]
                .iter()
                .any(|code| status.starts_with(&format!("HTTP/1.1 {code} "))),
            "{text}"
        );
        let head = head_len(&r);
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length: {text}"));
        let body = r.len() - head;
        prop_assert!(
            body == length || (body == 0 && input.starts_with(b"HEAD ")),
            "{text}"
        );
    }
}
