//! Lock tokens: the unique value a holder stores under the resource key.

use rand_core::CryptoRng;

/// Random bytes in a generated token (160 bits, above Redlock's 128-bit floor).
pub const TOKEN_RANDOM_BYTES: usize = 20;
/// Length of an acquire attempt's token: the operation's random bytes as hex
/// (40 characters) followed by the attempt number as 8 hex digits.
pub const ATTEMPT_TOKEN_LEN: usize = 2 * TOKEN_RANDOM_BYTES + 8;
/// The longest token accepted from outside (e.g. another client's value).
pub const MAX_TOKEN_LEN: usize = 64;

/// The value stored under a lock's key. Generated tokens are
/// [`TOKEN_RANDOM_BYTES`] bytes from the caller's cryptographic RNG, written as
/// lowercase hex so they are printable and safe in shells and JSON.
///
/// ```
/// use redlock_core::Token;
/// let t = Token::from_bytes(b"0123abcd").unwrap();
/// assert_eq!(t.as_str(), "0123abcd");
/// assert!(Token::from_bytes(b"").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    buf: [u8; MAX_TOKEN_LEN],
    len: u8,
}

impl Token {
    /// A fresh token of [`TOKEN_RANDOM_BYTES`] random bytes, hex-encoded.
    ///
    /// ```
    /// # use redlock_core::Token;
    /// # struct Counter(u64);
    /// # impl rand_core::TryRng for Counter {
    /// #     type Error = core::convert::Infallible;
    /// #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
    /// #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 += 1; Ok(self.0) }
    /// #     fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
    /// #         for b in d { *b = self.try_next_u64()? as u8 } Ok(()) }
    /// # }
    /// # impl rand_core::TryCryptoRng for Counter {}
    /// let token = Token::generate(&mut Counter(0));
    /// assert_eq!(token.as_bytes().len(), 40);
    /// ```
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Token {
        let mut raw = [0u8; TOKEN_RANDOM_BYTES];
        rng.fill_bytes(&mut raw);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; MAX_TOKEN_LEN];
        for (i, b) in raw.iter().enumerate() {
            buf[2 * i] = HEX[usize::from(b >> 4)];
            buf[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        Token {
            buf,
            len: (2 * TOKEN_RANDOM_BYTES) as u8,
        }
    }

    /// A token given as bytes (1..=[`MAX_TOKEN_LEN`]), e.g. read back from a
    /// command line. `None` when empty or too long.
    ///
    /// ```
    /// # use redlock_core::Token;
    /// assert!(Token::from_bytes(&[b'a'; 65]).is_none());
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Option<Token> {
        if bytes.is_empty() || bytes.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut buf = [0u8; MAX_TOKEN_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(Token {
            buf,
            len: bytes.len() as u8,
        })
    }

    /// The token of acquire attempt `attempt` of an operation whose random
    /// part is this token's first 40 characters: those characters followed by
    /// `attempt` as 8 hex digits.
    ///
    /// Every attempt of an acquire stores its own token, so the undo of a
    /// failed attempt (compare-and-delete) can never match a later attempt's
    /// key, whatever order the two reach a node in. A token shorter than 40
    /// characters is extended the same way from what it has.
    ///
    /// ```
    /// # use redlock_core::Token;
    /// let base = Token::from_bytes(&[b'a'; 40]).unwrap();
    /// let t1 = base.for_attempt(1);
    /// let t2 = base.for_attempt(2);
    /// assert_eq!(&t1.as_str()[40..], "00000001");
    /// assert_ne!(t1, t2);
    /// assert_eq!(t1.for_attempt(2), t2);
    /// ```
    pub fn for_attempt(&self, attempt: u32) -> Token {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let keep = usize::from(self.len).min(2 * TOKEN_RANDOM_BYTES);
        let mut buf = [0u8; MAX_TOKEN_LEN];
        buf[..keep].copy_from_slice(&self.buf[..keep]);
        for i in 0..8 {
            let nibble = (attempt >> (28 - 4 * i)) & 0xf;
            buf[keep + i] = HEX[nibble as usize];
        }
        Token {
            buf,
            len: (keep + 8) as u8,
        }
    }

    /// The token's bytes, as stored in Redis.
    ///
    /// ```
    /// # use redlock_core::Token;
    /// assert_eq!(Token::from_bytes(b"xy").unwrap().as_bytes(), b"xy");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The token as text; tokens that are not UTF-8 give `"<binary>"`.
    ///
    /// ```
    /// # use redlock_core::Token;
    /// assert_eq!(Token::from_bytes(&[0xff]).unwrap().as_str(), "<binary>");
    /// ```
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("<binary>")
    }
}

impl core::fmt::Debug for Token {
    /// Tokens are secrets of a kind (whoever knows one can release the lock),
    /// so `Debug` shows only a short prefix.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.as_str();
        let prefix = s.get(..s.len().min(6)).unwrap_or("");
        write!(f, "Token({prefix}…)")
    }
}
