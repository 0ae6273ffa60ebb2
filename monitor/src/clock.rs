//! Conversions between the kernel's boot-time clock and wall-clock time, and RFC 3339 output.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Converts `CLOCK_BOOTTIME` nanoseconds (what `bpf_ktime_get_boot_ns` returns) to wall time.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    /// Wall-clock time at boot, in nanoseconds since the Unix epoch.
    boot_epoch_ns: i128,
}

impl BootClock {
    /// Samples both clocks now.
    pub fn now() -> Self {
        let realtime = clock_ns(libc::CLOCK_REALTIME);
        let boottime = clock_ns(libc::CLOCK_BOOTTIME);
        Self {
            boot_epoch_ns: realtime - boottime,
        }
    }

    /// The wall time of a boot-time timestamp.
    pub fn to_system_time(&self, boot_ns: u64) -> SystemTime {
        let epoch_ns = self.boot_epoch_ns + i128::from(boot_ns);
        let epoch_ns = u64::try_from(epoch_ns.max(0)).unwrap_or(u64::MAX);
        UNIX_EPOCH + Duration::from_nanos(epoch_ns)
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec and both clock ids exist on Linux 2.6.39+.
    unsafe { libc::clock_gettime(clock, &mut now) };
    i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec)
}

/// Formats a time as RFC 3339 in UTC with microseconds, e.g. `2026-12-04T19:50:00.123456Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        since_epoch.subsec_micros()
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm,
/// from his public-domain "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_formats() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn known_dates_format() {
        // 2026-12-04T19:50:00.123456Z
        let time = UNIX_EPOCH + Duration::from_nanos(1_796_413_800_123_456_789);
        assert_eq!(rfc3339(time), "2026-12-04T19:50:00.123456Z");
        // Leap day.
        let time = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(time), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn boot_clock_is_close_to_now() {
        let clock = BootClock::now();
        let boot_now = u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap();
        let converted = clock.to_system_time(boot_now);
        let skew = SystemTime::now()
            .duration_since(converted)
            .unwrap_or_default();
        assert!(skew < Duration::from_secs(5), "{skew:?}");
    }
}
