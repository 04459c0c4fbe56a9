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
use crate::resources::ResourceSet;

/// Release (compare-and-delete) over every key in `KEYS`: deletes each key
/// that holds our token (`ARGV[1]`); keys holding another value are never
/// touched. Returns the number deleted; when none was ours, `0` if some key
/// holds another token and `-1` if every key is missing (expired or never
/// set). Sent by body (`EVAL`), never by SHA: see the crate docs ("Queue
/// discipline") for why.
pub const RELEASE_SCRIPT: &str = "local n,o=0,false \
for _,k in ipairs(KEYS) do local v=redis.call('get',k) \
if v==ARGV[1] then n=n+redis.call('del',k) elseif v then o=true end end \
if n>0 then return n elseif o then return 0 else return -1 end";
/// SHA1 of [`RELEASE_SCRIPT`].
pub const RELEASE_SHA: &str = "477b004051b47a510d62de635155cba4caf43ed3";
/// Extend (compare-and-`PEXPIRE`) all or nothing: if every key in `KEYS`
/// holds our token (`ARGV[1]`), sets each one's TTL to `ARGV[2]` ms and
/// returns `1`; otherwise changes nothing and returns `0` if some key holds
/// another token, `-1` if not (some are missing).
pub const EXTEND_SCRIPT: &str = "local m,o=0,false \
for _,k in ipairs(KEYS) do local v=redis.call('get',k) \
if v==ARGV[1] then m=m+1 elseif v then o=true end end \
if m==#KEYS then for _,k in ipairs(KEYS) do redis.call('pexpire',k,ARGV[2]) end return 1 \
elseif o then return 0 else return -1 end";
/// SHA1 of [`EXTEND_SCRIPT`].
pub const EXTEND_SHA: &str = "533938298955073f9492f012200b78564123361c";
/// Acquire all or nothing (several resources, or a fenced lock). `KEYS` are
/// the lock keys, followed, for a fenced lock (`ARGV[3]` = the proposal
/// `p`), by as many fence registers. If any lock key exists, returns `-1`
/// and changes nothing. Otherwise reads every register (`0` when absent;
/// a register that is not an integer is an error, before anything is
/// written), sets every lock key to the token (`ARGV[1]`) with TTL `ARGV[2]`
/// ms, raises every register below `p` to `p`, and returns the largest
/// register value read (`0` for a plain lock). Numbers stay below 2^53, so
/// Lua's doubles hold them exactly; `p` is written as the string given.
pub const ACQUIRE_SCRIPT: &str = "local k=#KEYS if ARGV[3] then k=k/2 end \
for i=1,k do if redis.call('exists',KEYS[i])==1 then return -1 end end \
local old=0 if ARGV[3] then for i=k+1,2*k do local v=redis.call('get',KEYS[i]) \
if v then local n=tonumber(v) if not n then return redis.error_reply('WRONGTYPE fence register '..KEYS[i]..' does not hold an integer') end \
if n>old then old=n end end end end \
for i=1,k do redis.call('set',KEYS[i],ARGV[1],'PX',ARGV[2]) end \
if ARGV[3] then local p=tonumber(ARGV[3]) for i=k+1,2*k do \
if tonumber(redis.call('get',KEYS[i]) or '0')<p then redis.call('set',KEYS[i],ARGV[3]) end end end \
return old";
/// Round 2 of a fenced acquire: `KEYS` are the lock keys then their fence
/// registers. If every lock key still holds our token (`ARGV[1]`), raises
/// every register below the fence `ARGV[2]` to it and returns `1`;
/// otherwise changes nothing and returns `0`.
pub const FENCE_WRITE_SCRIPT: &str = "local k=#KEYS/2 \
for i=1,k do if redis.call('get',KEYS[i])~=ARGV[1] then return 0 end end \
local f=tonumber(ARGV[2]) for i=k+1,2*k do local v=tonumber(redis.call('get',KEYS[i]) or '0') \
if not v or v<f then redis.call('set',KEYS[i],ARGV[2]) end end return 1";

/// Test-only weakened round 2: overwrites the registers with the fence
/// instead of raising them (a planted bug for the simulator to catch; sent
/// only by a core weakened on purpose, feature `__weaken`).
#[doc(hidden)]
pub const FENCE_WRITE_SET_SCRIPT: &str = "local k=#KEYS/2 \
for i=1,k do if redis.call('get',KEYS[i])~=ARGV[1] then return 0 end end \
for i=k+1,2*k do redis.call('set',KEYS[i],ARGV[2]) end return 1";
/// Test-only weakened fenced acquire: a per-node counter (`INCR`) instead of
/// a max register; returns the largest new counter value.
#[doc(hidden)]
pub const FENCE_INCR_SCRIPT: &str = "local k=#KEYS/2 \
for i=1,k do if redis.call('exists',KEYS[i])==1 then return -1 end end \
local top=0 for i=1,k do redis.call('set',KEYS[i],ARGV[1],'PX',ARGV[2]) \
local n=redis.call('incr',KEYS[k+i]) if n>top then top=n end end return top";

/// The name of `resource`'s fence register: `{resource}:fence`. The hash tag
/// `{resource}` puts it in the lock key's Redis Cluster slot whenever the
/// resource name holds no `{` of its own.
///
/// ```
/// let mut buf = [0u8; 64];
/// assert_eq!(redlock_core::fence_register(b"jobs:1", &mut buf), Some(b"{jobs:1}:fence".as_slice()));
/// ```
pub fn fence_register<'a>(resource: &[u8], buf: &'a mut [u8]) -> Option<&'a [u8]> {
    let len = resource.len() + FENCE_SUFFIX.len() + 1;
    let out = buf.get_mut(..len)?;
    out[0] = b'{';
    out[1..=resource.len()].copy_from_slice(resource);
    out[resource.len() + 1..].copy_from_slice(FENCE_SUFFIX);
    Some(out)
}

const FENCE_SUFFIX: &[u8] = b"}:fence";

/// Which script a scripted command runs.
///
/// Every script is sent by body (`EVAL`), never by `EVALSHA` with an `EVAL`
/// fallback: a fallback after `NOSCRIPT` is a second copy of a command that
/// the node answers after whatever was pipelined behind the first, and an
/// undo re-sent behind the next attempt's `SET` once deleted a fresh lock
/// (two holders). By body, what is written is what runs, in wire order; the
/// cost is about a hundred bytes per command and a SHA1 the node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Script {
    Release,
    Extend,
    Acquire,
    FenceWrite,
    /// Weakened build only.
    FenceWriteSet,
    /// Weakened build only.
    FenceIncr,
}

impl Script {
    pub(crate) fn body(self) -> &'static str {
        match self {
            Script::Release => RELEASE_SCRIPT,
            Script::Extend => EXTEND_SCRIPT,
            Script::Acquire => ACQUIRE_SCRIPT,
            Script::FenceWrite => FENCE_WRITE_SCRIPT,
            Script::FenceWriteSet => FENCE_WRITE_SET_SCRIPT,
            Script::FenceIncr => FENCE_INCR_SCRIPT,
        }
    }
    /// Only the weakened build sends scripts by SHA.
    #[cfg(feature = "__weaken")]
    fn sha(self) -> &'static str {
        match self {
            Script::Release => RELEASE_SHA,
            Script::Extend => EXTEND_SHA,
            // Never sent by SHA.
            _ => "",
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

/// The most frames one command has: `EVAL body numkeys`, a key and a
/// register per resource, and three arguments.
const MAX_FRAMES: usize = 6 + 2 * crate::resources::MAX_RESOURCES;

/// Encodes the args as a RESP array of bulk strings into `out`.
/// `None` when `out` is too small.
fn encode_args(out: &mut [u8], args: &[&[u8]]) -> Option<usize> {
    let mut frames: heapless::Vec<BorrowedFrame<'_>, MAX_FRAMES> = heapless::Vec::new();
    for a in args {
        frames.push(BorrowedFrame::BulkString(a)).ok()?;
    }
    encode_borrowed(out, &BorrowedFrame::Array(&frames), true).ok()
}

/// `SET key token NX PX ttl_ms`
pub(crate) fn encode_set(out: &mut [u8], key: &[u8], token: &[u8], ttl_ms: u64) -> Option<usize> {
    let mut d = [0u8; 20];
    encode_args(
        out,
        &[b"SET", key, token, b"NX", b"PX", decimal(ttl_ms, &mut d)],
    )
}

/// `EVAL script numkeys keys... [registers...] args...` (or `EVALSHA` in
/// the weakened build when `by_sha`): the lock keys of `resources`, then,
/// when `registers`, their fence registers, then `args`.
pub(crate) fn encode_script(
    out: &mut [u8],
    script: Script,
    by_sha: bool,
    resources: &ResourceSet,
    registers: bool,
    args: &[&[u8]],
) -> Option<usize> {
    let _ = by_sha;
    #[cfg(feature = "__weaken")]
    let (cmd, first): (&[u8], &[u8]) = if by_sha {
        (b"EVALSHA", script.sha().as_bytes())
    } else {
        (b"EVAL", script.body().as_bytes())
    };
    #[cfg(not(feature = "__weaken"))]
    let (cmd, first): (&[u8], &[u8]) = (b"EVAL", script.body().as_bytes());
    let mut regs =
        [0u8; crate::resources::MAX_RESOURCE_SET_LEN + 8 * crate::resources::MAX_RESOURCES];
    let mut reg_ends: heapless::Vec<usize, { crate::resources::MAX_RESOURCES }> =
        heapless::Vec::new();
    if registers {
        let mut at = 0;
        for r in resources.iter() {
            let len = fence_register(r, &mut regs[at..])?.len();
            at += len;
            reg_ends.push(at).ok()?;
        }
    }
    let keys = resources.len() * if registers { 2 } else { 1 };
    let mut d = [0u8; 20];
    let mut frames: heapless::Vec<BorrowedFrame<'_>, MAX_FRAMES> = heapless::Vec::new();
    frames.push(BorrowedFrame::BulkString(cmd)).ok()?;
    frames.push(BorrowedFrame::BulkString(first)).ok()?;
    frames
        .push(BorrowedFrame::BulkString(decimal(keys as u64, &mut d)))
        .ok()?;
    for r in resources.iter() {
        frames.push(BorrowedFrame::BulkString(r)).ok()?;
    }
    let mut start = 0;
    for &end in &reg_ends {
        frames
            .push(BorrowedFrame::BulkString(&regs[start..end]))
            .ok()?;
        start = end;
    }
    for a in args {
        frames.push(BorrowedFrame::BulkString(a)).ok()?;
    }
    encode_borrowed(out, &BorrowedFrame::Array(&frames), true).ok()
}

/// Formats `n` in decimal (for script arguments) into `buf`.
pub(crate) fn digits(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    decimal(n, buf)
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

/// `SCRIPT LOAD body` (the weakened build's handshake only).
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
        for (body, sha) in [(RELEASE_SCRIPT, RELEASE_SHA), (EXTEND_SCRIPT, EXTEND_SHA)] {
            assert_eq!(sha1_smol::Sha1::from(body).digest().to_string(), sha);
        }
    }

    #[test]
    fn fenced_multi_script_encodes_keys_then_registers() {
        let set = ResourceSet::new(&[b"b".as_slice(), b"a"]).unwrap();
        let mut out = [0u8; 2048];
        let n = encode_script(
            &mut out,
            Script::Acquire,
            false,
            &set,
            true,
            &[b"t", b"9", b"7"],
        )
        .unwrap();
        let text = core::str::from_utf8(&out[..n]).unwrap();
        let parts: std::vec::Vec<&str> = text.split("\r\n").collect();
        // *10, then bulk headers and values alternate.
        assert_eq!(parts[0], "*10");
        let values: std::vec::Vec<&str> = parts[1..].iter().skip(1).step_by(2).copied().collect();
        assert_eq!(values[0], "EVAL");
        assert_eq!(values[1], ACQUIRE_SCRIPT);
        assert_eq!(
            &values[2..10],
            ["4", "a", "b", "{a}:fence", "{b}:fence", "t", "9", "7"]
        );
        // Too small a buffer is None, never a panic.
        assert!(
            encode_script(&mut out[..20], Script::Acquire, false, &set, true, &[b"t"]).is_none()
        );
    }

    #[test]
    fn largest_command_fits_the_minimum_transmit_buffer() {
        let names: std::vec::Vec<std::vec::Vec<u8>> = (0..4u8)
            .map(|i| {
                let mut v = std::vec![b'x'; crate::MAX_RESOURCE_LEN];
                v[0] = i;
                v
            })
            .collect();
        let refs: std::vec::Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
        let set = ResourceSet::new(&refs).unwrap();
        let token = [b'f'; crate::MAX_TOKEN_LEN];
        let mut out = std::vec![0u8; crate::MIN_TRANSMIT_BUF];
        let n = encode_script(
            &mut out,
            Script::Acquire,
            false,
            &set,
            true,
            &[&token, b"18446744073709551615", b"18446744073709551615"],
        );
        assert!(n.is_some());
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
