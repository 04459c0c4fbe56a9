//! RESP encoding of our commands and classification of replies, on top of
//! `redis-protocol`.
//!
//! Commands are encoded with `encode_borrowed` straight into the caller's
//! buffer; replies are decoded with `decode_range` over the link's receive
//! buffer. Neither allocates for the replies Redlock expects (`+OK`, `$-1`,
//! `:0`, `:1`, `-ERR ...`, short bulk strings). Aggregates are refused before
//! `redis-protocol` sees them: no command of ours answers with one, and a
//! hostile `*999999999` header must not make anything allocate.

use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, RangeFrame};

use crate::event::ErrorKind;

/// Compare-and-delete: deletes the key only if it holds our token.
pub const RELEASE_SCRIPT: &str =
    "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end";
/// SHA1 of [`RELEASE_SCRIPT`], for `EVALSHA`.
pub const RELEASE_SHA: &str = "b70c2384248f88e6b75b9f89241a180f856ad852";
/// Compare-and-`PEXPIRE`: renews the key's TTL only if it holds our token.
pub const EXTEND_SCRIPT: &str =
    "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"pexpire\",KEYS[1],ARGV[2]) else return 0 end";
/// SHA1 of [`EXTEND_SCRIPT`], for `EVALSHA`.
pub const EXTEND_SHA: &str = "36e94d1c6e02fcefaa7ee5d79eee614dbac55f10";

/// Which script a scripted command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Script {
    Release,
    Extend,
}

impl Script {
    fn body(self) -> &'static str {
        match self {
            Script::Release => RELEASE_SCRIPT,
            Script::Extend => EXTEND_SCRIPT,
        }
    }
    fn sha(self) -> &'static str {
        match self {
            Script::Release => RELEASE_SHA,
            Script::Extend => EXTEND_SHA,
        }
    }
}

/// Formats `n` in decimal into `buf`, returning the digits.
fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Encodes the args as a RESP array of bulk strings into `out`.
/// `None` when `out` is too small.
fn encode_args(out: &mut [u8], args: &[&[u8]]) -> Option<usize> {
    let mut frames: [BorrowedFrame<'_>; 6] = [
        BorrowedFrame::Null,
        BorrowedFrame::Null,
        BorrowedFrame::Null,
        BorrowedFrame::Null,
        BorrowedFrame::Null,
        BorrowedFrame::Null,
    ];
    let frames = frames.get_mut(..args.len())?;
    for (f, a) in frames.iter_mut().zip(args) {
        *f = BorrowedFrame::BulkString(a);
    }
    encode_borrowed(out, &BorrowedFrame::Array(frames), true).ok()
}

/// `SET key token NX PX ttl_ms`
pub(crate) fn encode_set(out: &mut [u8], key: &[u8], token: &[u8], ttl_ms: u64) -> Option<usize> {
    let mut d = [0u8; 20];
    encode_args(
        out,
        &[b"SET", key, token, b"NX", b"PX", decimal(ttl_ms, &mut d)],
    )
}

/// `EVALSHA sha 1 key token [ttl_ms]`, or `EVAL script ...` when `by_body`.
pub(crate) fn encode_script(
    out: &mut [u8],
    script: Script,
    by_body: bool,
    key: &[u8],
    token: &[u8],
    ttl_ms: u64,
) -> Option<usize> {
    let (cmd, first): (&[u8], &[u8]) = if by_body {
        (b"EVAL", script.body().as_bytes())
    } else {
        (b"EVALSHA", script.sha().as_bytes())
    };
    let mut d = [0u8; 20];
    match script {
        Script::Release => encode_args(out, &[cmd, first, b"1", key, token]),
        Script::Extend => encode_args(
            out,
            &[cmd, first, b"1", key, token, decimal(ttl_ms, &mut d)],
        ),
    }
}

/// `AUTH [username] password`
pub(crate) fn encode_auth(out: &mut [u8], username: Option<&str>, password: &str) -> Option<usize> {
    match username {
        Some(u) => encode_args(out, &[b"AUTH", u.as_bytes(), password.as_bytes()]),
        None => encode_args(out, &[b"AUTH", password.as_bytes()]),
    }
}

/// `SELECT db`
pub(crate) fn encode_select(out: &mut [u8], db: u16) -> Option<usize> {
    let mut d = [0u8; 20];
    encode_args(out, &[b"SELECT", decimal(u64::from(db), &mut d)])
}

/// `SCRIPT LOAD body`
pub(crate) fn encode_script_load(out: &mut [u8], script: Script) -> Option<usize> {
    encode_args(out, &[b"SCRIPT", b"LOAD", script.body().as_bytes()])
}

/// A decoded reply, borrowing nothing: error text is a range into the
/// buffer it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+...` (e.g. `+OK`).
    Simple,
    /// `$n ...` with a value.
    Bulk,
    /// `$-1` or `*-1`.
    Nil,
    /// `:n`.
    Int(i64),
    /// `-...`: kind, and the message's byte range in the buffer.
    Error(ErrorKind, usize, usize),
}

/// Decodes one reply from the front of `buf`.
/// `Ok(None)`: need more bytes. `Err(())`: not a reply we can accept.
pub(crate) fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, ()> {
    match buf.first() {
        None => return Ok(None),
        Some(b'+' | b'-' | b':' | b'$') => {}
        Some(b'*') => {
            // Only the null array is acceptable.
            return match buf.get(..5) {
                Some(b"*-1\r\n") => Ok(Some((Reply::Nil, 5))),
                Some(prefix) if b"*-1\r\n".starts_with(prefix) => Ok(None),
                None if b"*-1\r\n".starts_with(buf) => Ok(None),
                _ => Err(()),
            };
        }
        Some(_) => return Err(()),
    }
    match decode_range(buf) {
        Ok(None) => Ok(None),
        Ok(Some((frame, used))) => {
            let reply = match frame {
                RangeFrame::SimpleString(_) => Reply::Simple,
                RangeFrame::BulkString(_) => Reply::Bulk,
                RangeFrame::Null => Reply::Nil,
                RangeFrame::Integer(i) => Reply::Int(i),
                RangeFrame::Error((s, e)) => {
                    let msg = buf.get(s..e).ok_or(())?;
                    Reply::Error(classify_error(msg), s, e)
                }
                RangeFrame::Array(_) => return Err(()),
            };
            Ok(Some((reply, used)))
        }
        Err(_) => Err(()),
    }
}

/// Maps an error reply's text to its kind by its leading code.
pub(crate) fn classify_error(msg: &[u8]) -> ErrorKind {
    let code = msg.split(|b| *b == b' ').next().unwrap_or(&[]);
    match code {
        b"NOAUTH" | b"WRONGPASS" | b"NOPERM" => ErrorKind::Auth,
        b"NOSCRIPT" => ErrorKind::NoScript,
        b"WRONGTYPE" => ErrorKind::WrongType,
        b"READONLY" => ErrorKind::ReadOnly,
        b"OOM" => ErrorKind::Oom,
        b"LOADING" => ErrorKind::Loading,
        b"BUSY" => ErrorKind::Busy,
        _ => {
            // Older servers and AUTH to a password-less node answer
            // "-ERR invalid password", "-ERR AUTH <password> called without
            // any password configured ...", "-ERR Client sent AUTH, but no
            // password is set".
            if contains(msg, b"password") || contains(msg, b"AUTH") {
                ErrorKind::Auth
            } else if contains(msg, b"WRONGTYPE") {
                // Script errors wrap the inner error.
                ErrorKind::WrongType
            } else {
                ErrorKind::Other
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_shas_match_bodies() {
        for s in [Script::Release, Script::Extend] {
            assert_eq!(
                sha1_smol::Sha1::from(s.body()).digest().to_string(),
                s.sha()
            );
        }
    }

    #[test]
    fn set_encodes_as_redis_expects() {
        let mut out = [0u8; 128];
        let n = encode_set(&mut out, b"res", b"tok", 30_000).unwrap();
        assert_eq!(
            &out[..n],
            b"*6\r\n$3\r\nSET\r\n$3\r\nres\r\n$3\r\ntok\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n"
        );
        assert!(encode_set(&mut out[..10], b"res", b"tok", 1).is_none());
    }

    #[test]
    fn decimal_formats() {
        let mut d = [0u8; 20];
        assert_eq!(decimal(0, &mut d), b"0");
        assert_eq!(decimal(u64::MAX, &mut d), b"18446744073709551615");
    }

    #[test]
    fn replies_decode() {
        assert_eq!(decode(b"+OK\r\n"), Ok(Some((Reply::Simple, 5))));
        assert_eq!(decode(b"$-1\r\n"), Ok(Some((Reply::Nil, 5))));
        assert_eq!(decode(b"*-1\r\n"), Ok(Some((Reply::Nil, 5))));
        assert_eq!(decode(b":1\r\n"), Ok(Some((Reply::Int(1), 4))));
        assert_eq!(decode(b"+OK\r"), Ok(None));
        assert_eq!(decode(b"*-"), Ok(None));
        assert_eq!(decode(b"*2\r\n:1\r\n:2\r\n"), Err(()));
        assert_eq!(decode(b"?x\r\n"), Err(()));
        match decode(b"-NOSCRIPT No matching script\r\n") {
            Ok(Some((Reply::Error(ErrorKind::NoScript, _, _), 30))) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_classify() {
        assert_eq!(
            classify_error(b"WRONGPASS invalid username-password pair"),
            ErrorKind::Auth
        );
        assert_eq!(
            classify_error(b"NOAUTH Authentication required."),
            ErrorKind::Auth
        );
        assert_eq!(classify_error(b"ERR invalid password"), ErrorKind::Auth);
        assert_eq!(
            classify_error(b"READONLY You can't write against a read only replica."),
            ErrorKind::ReadOnly
        );
        assert_eq!(classify_error(b"OOM command not allowed"), ErrorKind::Oom);
        assert_eq!(
            classify_error(b"LOADING Redis is loading"),
            ErrorKind::Loading
        );
        assert_eq!(classify_error(b"ERR unknown command"), ErrorKind::Other);
        assert_eq!(
            classify_error(b"ERR Error running script: WRONGTYPE Operation against a key"),
            ErrorKind::WrongType
        );
    }
}
