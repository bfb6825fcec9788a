//! What the operating system knows about this process and machine: CPU
//! time, resident memory, processor, date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// CPU time used so far by every thread of this process.
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a
    // constant Linux always supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU microseconds this process uses per second of wall time while the
/// calling thread sleeps for `secs`: what everything else costs.
pub fn cpu_micros_per_sec_over(secs: f64) -> f64 {
    let before = process_cpu_time();
    std::thread::sleep(Duration::from_secs_f64(secs));
    (process_cpu_time() - before).as_secs_f64() * 1e6 / secs
}

/// Waits, at most `limit`, until this process is quiet (under 5% of one
/// CPU over a 20 ms window), so that a pool just dropped, whose threads
/// may still be exiting or spinning down, does not share the cores with
/// the next one measured. Whether it got quiet.
pub fn settle(limit: Duration) -> bool {
    const WINDOW: Duration = Duration::from_millis(20);
    let deadline = std::time::Instant::now() + limit;
    loop {
        let before = process_cpu_time();
        std::thread::sleep(WINDOW);
        if (process_cpu_time() - before) * 20 < WINDOW {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`: resident now,
/// `VmHWM`: the peak so far).
pub fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// The processor as `/proc/cpuinfo` names it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Logical CPUs this process may use (what `nproc` prints).
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The kernel release.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The most file descriptors this process may open (`ulimit -n`).
pub fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc == 0 { limit.rlim_cur } else { 0 }
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` has them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`), to avoid a date crate for one line of the report.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Pins the calling thread, and so every thread it starts afterwards, to
/// the first CPU it may run on.
pub fn pin_to_one_cpu() {
    // SAFETY: `set` is a plain bit set, zeroed and then filled by the
    // libc helpers; both calls read and write only it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            panic!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &set))
            .expect("the process may run on some CPU");
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(first, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            panic!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn reads_proc() {
        assert!(status_bytes("VmRSS") > 0);
        assert!(status_bytes("VmHWM") >= status_bytes("VmRSS") / 2);
        assert!(process_cpu_time() > Duration::ZERO);
        assert!(open_files_limit() > 0);
        assert_eq!(loadavg().split(' ').count(), 3);
    }
}
