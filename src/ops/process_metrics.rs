//! The process's own figures under the names every Prometheus client library uses
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …), read from
//! `/proc/self` at scrape time. Where `/proc` is missing or a file does not parse
//! (another OS, a locked-down sandbox) the lines it would give are left out: a scrape
//! never fails for them.

use std::fmt::Write as _;
use std::path::Path;

/// Clock ticks per second of the times in `/proc/[pid]/stat` (`USER_HZ`). The kernel
/// fixes it at 100 for user space on every architecture Linux supports today; the
/// Prometheus Go client's procfs library uses the same constant rather than `sysconf`.
const USER_HZ: f64 = 100.0;

/// What `/proc/self` said, each figure apart (one that could not be read is `None`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
}

impl ProcessFigures {
    /// Reads this process's figures from `proc` (normally `/proc`).
    pub fn read(proc: &Path) -> ProcessFigures {
        let me = proc.join("self");
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let stat = read(&me.join("stat")).and_then(|s| Stat::parse(&s));
        let status = read(&me.join("status"));
        let boot_time = read(&proc.join("stat")).and_then(|s| boot_time(&s));
        ProcessFigures {
            cpu_seconds: stat.as_ref().map(|s| (s.utime + s.stime) as f64 / USER_HZ),
            resident_bytes: status.as_deref().and_then(|s| status_kib(s, "VmRSS:")),
            virtual_bytes: status.as_deref().and_then(|s| status_kib(s, "VmSize:")),
            open_fds: std::fs::read_dir(me.join("fd"))
                .ok()
                .map(|entries| entries.count() as u64),
            max_fds: read(&me.join("limits")).and_then(|s| max_open_files(&s)),
            start_time_seconds: match (&stat, boot_time) {
                (Some(s), Some(boot)) => Some(boot as f64 + s.starttime as f64 / USER_HZ),
                _ => None,
            },
            threads: stat.as_ref().map(|s| s.num_threads),
        }
    }

    /// Appends the figures in the text format.
    pub fn render(&self, out: &mut String) {
        let lines: [(&str, &str, &str, Option<f64>); 7] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes (the store's map counts in full).",
                self.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                self.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors (the soft limit).",
                self.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
            (
                "process_threads",
                "gauge",
                "Number of OS threads in the process.",
                self.threads.map(|v| v as f64),
            ),
        ];
        for (name, kind, help, value) in lines {
            if let Some(value) = value {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                let _ = writeln!(out, "{name} {value}");
            }
        }
    }
}

/// The fields of `/proc/[pid]/stat` used here.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    num_threads: u64,
    starttime: u64,
}

impl Stat {
    /// The command name (field 2) is in parentheses and may hold spaces and
    /// parentheses itself, so fields are counted from the last `)`.
    fn parse(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        // After the name: field 3 (state) is index 0.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            num_threads: field(20)?,
            starttime: field(22)?,
        })
    }
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `kB` line of `/proc/[pid]/status`, in bytes.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix(key))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The soft limit of "Max open files" in `/proc/[pid]/limits` (`None` when unlimited).
fn max_open_files(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis, as a thread may rename itself.
        let line = "4242 (run (x) y) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 125 0 0 20 0 17 0 123456 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                utime: 250,
                stime: 125,
                num_threads: 17,
                starttime: 123456
            })
        );
        assert_eq!(Stat::parse("4242 (cut short) S 1"), None);
    }

    #[test]
    fn status_limits_and_boot_time_parse() {
        let status = "Name:\trunner\nVmSize:\t  204800 kB\nVmRSS:\t    5120 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(5 * 1024 * 1024));
        assert_eq!(status_kib(status, "VmSize:"), Some(200 * 1024 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764990000\n"),
            Some(1_764_990_000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_sanely() {
        let f = ProcessFigures::read(Path::new("/proc"));
        let rss = f.resident_bytes.expect("VmRSS");
        assert!(rss > 1 << 20, "{rss} bytes resident");
        let fds = f.open_fds.expect("fds");
        assert!(fds >= 3 && fds <= f.max_fds.expect("limit"), "{fds}");
        let now = crate::timefmt::now_ms() as f64 / 1000.0;
        let start = f.start_time_seconds.expect("start");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        assert!(f.cpu_seconds.expect("cpu") >= 0.0);
        let mut out = String::new();
        f.render(&mut out);
        assert!(out.contains("\nprocess_open_fds "), "{out}");
        assert!(
            out.contains("# TYPE process_cpu_seconds_total counter"),
            "{out}"
        );
    }

    #[test]
    fn a_missing_proc_gives_no_lines() {
        let f = ProcessFigures::read(Path::new("/nonexistent-proc"));
        assert_eq!(f, ProcessFigures::default());
        let mut out = String::new();
        f.render(&mut out);
        assert!(out.is_empty());
    }
}
