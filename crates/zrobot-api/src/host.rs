//! Figures of the host for `GET /robot/metrics` and `/metrics`, read from
//! `/proc` as 0-robot did: the CPU share of each mode and the memory
//! counters its API names (`nice`, `iowait`, `active`, `cached`... which
//! portable libraries do not give), the bytes of each network interface,
//! and the filesystem of a folder. On a host without `/proc` they are
//! zeros, or absent.

use std::sync::Mutex;

use crate::wire::{CpuMetrics, MemoryMetrics};

/// CPU times of the modes 0-robot reports, in clock ticks since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct CpuTimes {
    user: u64,
    nice: u64,
    system: u64,
    idle: u64,
    iowait: u64,
    irq: u64,
    softirq: u64,
    /// Every mode, those above and the others (steal, guest...).
    total: u64,
}

/// Keeps the last CPU sample, so that each answer covers the time since the
/// previous one (psutil's `cpu_times_percent()`, which 0-robot used).
#[derive(Default)]
pub struct HostFigures {
    last: Mutex<Option<CpuTimes>>,
}

impl HostFigures {
    pub fn cpu(&self) -> CpuMetrics {
        let Some(now) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
        else {
            return CpuMetrics::default();
        };
        let before = self
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(now)
            .unwrap_or_default();
        cpu_percent(&before, &now)
    }

    pub fn memory(&self) -> MemoryMetrics {
        std::fs::read_to_string("/proc/meminfo")
            .map(|s| parse_meminfo(&s))
            .unwrap_or_default()
    }
}

/// The size of a filesystem, in bytes.
pub struct Filesystem {
    pub size: u64,
    pub free: u64,
    /// Free to an unprivileged process (the robot).
    pub available: u64,
}

/// The filesystem `path` is on; `None` if it cannot be read.
pub fn filesystem(path: &std::path::Path) -> Option<Filesystem> {
    let s = rustix::fs::statvfs(path).ok()?;
    let block = s.f_frsize;
    Some(Filesystem {
        size: s.f_blocks.saturating_mul(block),
        free: s.f_bfree.saturating_mul(block),
        available: s.f_bavail.saturating_mul(block),
    })
}

/// `(interface, received, sent)` bytes of every network interface.
pub fn network() -> Vec<(String, u64, u64)> {
    std::fs::read_to_string("/proc/net/dev")
        .map(|s| parse_net_dev(&s))
        .unwrap_or_default()
}

fn parse_net_dev(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let f: Vec<u64> = counters
                .split_whitespace()
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            // Received: bytes packets errs drop fifo frame compressed
            // multicast; then sent: bytes ...
            Some((name.trim().to_owned(), *f.first()?, *f.get(8)?))
        })
        .collect()
}

fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // guest and guest_nice (fields 8 and 9) are already counted in user and nice.
    let total = (0..8).map(at).sum();
    Some(CpuTimes {
        user: at(0),
        nice: at(1),
        system: at(2),
        idle: at(3),
        iowait: at(4),
        irq: at(5),
        softirq: at(6),
        total,
    })
}

fn cpu_percent(before: &CpuTimes, now: &CpuTimes) -> CpuMetrics {
    let total = now.total.saturating_sub(before.total);
    // Two requests within one clock tick: measure since boot instead.
    let (b, total) = if total == 0 {
        (CpuTimes::default(), now.total)
    } else {
        (*before, total)
    };
    let pct = |a: u64, b: u64| {
        if total == 0 {
            0.0
        } else {
            (a.saturating_sub(b) as f64 * 1000.0 / total as f64).round() / 10.0
        }
    };
    CpuMetrics {
        user: pct(now.user, b.user),
        nice: pct(now.nice, b.nice),
        system: pct(now.system, b.system),
        idle: pct(now.idle, b.idle),
        iowait: pct(now.iowait, b.iowait),
        irq: pct(now.irq, b.irq),
        softirq: pct(now.softirq, b.softirq),
    }
}

fn parse_meminfo(text: &str) -> MemoryMetrics {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|v| v * 1024)
            .unwrap_or(0)
    };
    MemoryMetrics {
        total: kib("MemTotal"),
        active: kib("Active"),
        free: kib("MemFree"),
        cached: kib("Cached"),
        swap_total: kib("SwapTotal"),
        swap_free: kib("SwapFree"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_between_samples() {
        let a = parse_stat("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        let b = parse_stat("cpu  150 10 120 810 5 3 2 0 40 0\n").unwrap();
        let p = cpu_percent(&a, &b);
        assert_eq!(p.user, 50.0);
        assert_eq!(p.nice, 10.0);
        assert_eq!(p.system, 20.0);
        assert_eq!(p.idle, 10.0);
        assert_eq!(p.iowait, 5.0);
        assert_eq!(p.irq, 3.0);
        assert_eq!(p.softirq, 2.0);
    }

    #[test]
    fn network_bytes_by_interface() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  1234      10    0    0    0     0          0         0     1234      10    0    0    0     0       0          0\n  eth0: 98765     100    0    0    0     0          0         0    4321      50    0    0    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(text),
            vec![
                ("lo".to_owned(), 1234, 1234),
                ("eth0".to_owned(), 98765, 4321)
            ]
        );
    }

    #[test]
    fn the_filesystem_of_a_folder_has_a_size() {
        let fs = filesystem(std::path::Path::new(".")).unwrap();
        assert!(fs.size > 0 && fs.free <= fs.size && fs.available <= fs.free);
    }

    #[test]
    fn meminfo_in_bytes() {
        let m = parse_meminfo(
            "MemTotal:       16000 kB\nMemFree:  1000 kB\nActive:  200 kB\nActive(anon): 5 kB\nCached: 300 kB\nSwapCached: 7 kB\nSwapTotal: 40 kB\nSwapFree: 30 kB\n",
        );
        assert_eq!(m.total, 16000 * 1024);
        assert_eq!(m.free, 1000 * 1024);
        assert_eq!(m.active, 200 * 1024);
        assert_eq!(m.cached, 300 * 1024);
        assert_eq!(m.swap_total, 40 * 1024);
        assert_eq!(m.swap_free, 30 * 1024);
    }
}
