//! The caller's monotonic clock.
//!
//! The core never reads a clock. Every input carries an [`Instant`] taken by
//! the caller from a monotonic source (`std::time::Instant`, a hardware timer,
//! or a simulator's virtual time). An `Instant` is a count of microseconds
//! since an epoch the caller chooses; only differences between instants mean
//! anything, so any epoch works as long as it never changes for one core.
//!
//! Durations are plain [`core::time::Duration`]s.

use core::time::Duration;

/// A point on the caller's monotonic clock, in microseconds since an arbitrary
/// epoch.
///
/// ```
/// use core::time::Duration;
/// use redlock_core::Instant;
///
/// let t0 = Instant::from_millis(5);
/// let t1 = t0 + Duration::from_millis(20);
/// assert_eq!(t1.saturating_duration_since(t0), Duration::from_millis(20));
/// // Time never runs backwards inside the core: the difference saturates.
/// assert_eq!(t0.saturating_duration_since(t1), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant; used as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `micros` microseconds after the epoch.
    ///
    /// ```
    /// # use redlock_core::Instant;
    /// assert_eq!(Instant::from_micros(1_500).as_micros(), 1_500);
    /// ```
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// An instant `millis` milliseconds after the epoch (saturating).
    ///
    /// ```
    /// # use redlock_core::Instant;
    /// assert_eq!(Instant::from_millis(2).as_micros(), 2_000);
    /// ```
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000))
    }

    /// Microseconds since the epoch.
    ///
    /// ```
    /// # use redlock_core::Instant;
    /// assert_eq!(Instant::ZERO.as_micros(), 0);
    /// ```
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or zero when `earlier` is later than `self`.
    ///
    /// ```
    /// # use redlock_core::Instant;
    /// # use core::time::Duration;
    /// let a = Instant::from_millis(10);
    /// assert_eq!(a.saturating_duration_since(Instant::ZERO), Duration::from_millis(10));
    /// ```
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    ///
    /// ```
    /// # use redlock_core::Instant;
    /// # use core::time::Duration;
    /// assert_eq!(Instant::MAX.saturating_add(Duration::from_secs(1)), Instant::MAX);
    /// ```
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(micros(d)))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    ///
    /// ```
    /// # use redlock_core::Instant;
    /// # use core::time::Duration;
    /// assert_eq!(Instant::ZERO.saturating_sub(Duration::from_secs(1)), Instant::ZERO);
    /// ```
    pub fn saturating_sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(micros(d)))
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating addition: the core's instants never overflow.
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

/// A duration in whole microseconds, saturating at `u64::MAX`.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
