//! Exit statuses (see the table in `--help`); values follow sysexits.h.

/// Done.
pub(crate) const OK: u8 = 0;
/// `sim`: a safety violation was found.
pub(crate) const VIOLATION: u8 = 1;
/// Usage: unknown flag, bad URL, bad duration, missing argument.
pub(crate) const USAGE: u8 = 2;
/// Too few nodes answered to decide (EX_UNAVAILABLE).
pub(crate) const UNAVAILABLE: u8 = 69;
/// `exec`: the lock was lost while CMD ran; CMD was terminated.
pub(crate) const LOST: u8 = 70;
/// `sim`: could not write its output (EX_IOERR).
pub(crate) const IO: u8 = 74;
/// Held by someone else / this token does not hold it (EX_TEMPFAIL).
pub(crate) const BUSY: u8 = 75;
/// A node rejected our authentication (EX_NOPERM).
pub(crate) const AUTH: u8 = 77;
/// `exec`: CMD exists but could not be run.
pub(crate) const CANNOT_RUN: u8 = 126;
/// `exec`: CMD was not found.
pub(crate) const NOT_FOUND: u8 = 127;
