//! Per-thread figures of a process, read from `/proc/{pid}/task`: CPU time and context
//! switches, by thread name. Numbered threads of one pool (`effect-0`, `effect-1`, …)
//! are summed as one (`effect-*`): 64 workers that each cost little cost much together.
//!
//! Context switches are counted because they do not move with the machine's speed, as
//! CPU time does (2.5× from hour to hour here): a design that hands a message across
//! fewer threads shows it in this count in any hour.

use std::ops::AddAssign;
use std::path::Path;
use std::time::Duration;

use super::parse_stat;

/// CPU time per thread name of this process.
pub(super) fn thread_cpu() -> Vec<(String, Duration)> {
    threads_of("self")
}

/// CPU time per thread name of process `pid` ("self" for this one). From `schedstat`
/// (the thread's run time in ns) where the kernel has it: `stat` counts whole clock
/// ticks of 10 ms per thread, so a pool of many threads that each ran a few ms between
/// two samples read as almost nothing (256 effect workers vanished from the table).
pub(super) fn threads_of(pid: &str) -> Vec<(String, Duration)> {
    per_thread_name(pid, |task| {
        let (name, ticks) = parse_stat(&std::fs::read_to_string(task.join("stat")).ok()?)?;
        let exact = std::fs::read_to_string(task.join("schedstat"))
            .ok()
            .and_then(|s| parse_schedstat(&s));
        Some((name, exact.unwrap_or(ticks)))
    })
}

/// The run time a `/proc/…/schedstat` file starts with (ns on the CPU, user and system).
fn parse_schedstat(schedstat: &str) -> Option<Duration> {
    let ns = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// How often threads left their CPU: to wait (voluntary: a parked receive, a lock, a
/// sync) or while still runnable (involuntary: a `sched_yield`, which a crossbeam
/// receive makes up to four times before it parks, or a preemption).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Switches {
    pub voluntary: u64,
    pub involuntary: u64,
}

impl Switches {
    pub fn total(&self) -> u64 {
        self.voluntary + self.involuntary
    }

    fn since(&self, before: &Switches) -> Switches {
        Switches {
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }
}

impl AddAssign for Switches {
    fn add_assign(&mut self, other: Switches) {
        self.voluntary += other.voluntary;
        self.involuntary += other.involuntary;
    }
}

/// Context switches per thread name of process `pid`.
pub(super) fn switches_of(pid: &str) -> Vec<(String, Switches)> {
    per_thread_name(pid, |task| {
        parse_status(&std::fs::read_to_string(task.join("status")).ok()?)
    })
}

/// The name and context switch counts of a `/proc/…/status` file.
fn parse_status(status: &str) -> Option<(String, Switches)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let count = |name: &str| field(name)?.parse::<u64>().ok();
    Some((
        field("Name")?.to_string(),
        Switches {
            voluntary: count("voluntary_ctxt_switches")?,
            involuntary: count("nonvoluntary_ctxt_switches")?,
        },
    ))
}

/// The context switches per workflow between two [`switches_of`] samples: the whole
/// process's, and each thread name's (the most first). A thread that ended between
/// the samples is missing from the second and counted as nothing.
pub(super) fn switches_per_workflow(
    before: &[(String, Switches)],
    after: Vec<(String, Switches)>,
    workflows: u64,
) -> (PerWorkflow, Vec<(String, f64)>) {
    let n = workflows.max(1) as f64;
    let mut whole = Switches::default();
    let mut by_thread: Vec<(String, f64)> = after
        .into_iter()
        .map(|(name, after)| {
            let before = lookup(before, &name).unwrap_or_default();
            let d = after.since(&before);
            whole += d;
            (name, d.total() as f64 / n)
        })
        .filter(|(_, per)| *per > 0.0)
        .collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    let per = PerWorkflow {
        voluntary: whole.voluntary as f64 / n,
        involuntary: whole.involuntary as f64 / n,
    };
    (per, by_thread)
}

/// Context switches per workflow of a whole process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PerWorkflow {
    pub voluntary: f64,
    pub involuntary: f64,
}

fn lookup<T: Copy>(sample: &[(String, T)], name: &str) -> Option<T> {
    sample.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// One value per thread name of process `pid`, read from each task's directory by
/// `read` (the thread's name and its value); threads of one name are summed.
fn per_thread_name<T: AddAssign>(
    pid: &str,
    read: impl Fn(&Path) -> Option<(String, T)>,
) -> Vec<(String, T)> {
    let mut out: Vec<(String, T)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    let process = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    for task in tasks.flatten() {
        let Some((name, value)) = read(&task.path()) else {
            continue;
        };
        let name = pool_name(unnamed_as_such(name, process.trim_end()));
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v += value,
            None => out.push((name, value)),
        }
    }
    out
}

/// Threads nobody named carry the process's name (the binary's file name, `runner` or
/// whatever a copy is called): in the Runner those are the main thread and the nats
/// client's own reader and flusher threads.
fn unnamed_as_such(name: String, process: &str) -> String {
    if name == process {
        UNNAMED.to_string()
    } else {
        name
    }
}

const UNNAMED: &str = "unnamed (main, nats client)";

/// `effect-12` → `effect-*`; other names as they are.
fn pool_name(name: String) -> String {
    match name.rsplit_once('-') {
        Some((pool, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{pool}-*")
        }
        _ => name,
    }
}

/// CPU per event of each thread name between two `threads_of` samples, largest first,
/// leaving out threads that used none.
pub(super) fn per_event_by_thread(
    before: &[(String, Duration)],
    after: Vec<(String, Duration)>,
    events: u64,
) -> Vec<(String, Duration)> {
    let mut by_thread: Vec<(String, Duration)> = after
        .into_iter()
        .map(|(name, after)| {
            let before = lookup(before, &name).unwrap_or(Duration::ZERO);
            (name, after.saturating_sub(before) / events.max(1) as u32)
        })
        .filter(|(_, d)| !d.is_zero())
        .collect();
    by_thread.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    by_thread
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_named_like_the_process_are_reported_as_unnamed() {
        assert_eq!(unnamed_as_such("runner-new".into(), "runner-new"), UNNAMED);
        assert_eq!(unnamed_as_such("runner".into(), "runner"), UNNAMED);
        assert_eq!(unnamed_as_such("execute".into(), "runner"), "execute");
    }

    #[test]
    fn numbered_threads_of_a_pool_share_one_name() {
        assert_eq!(pool_name("effect-12".into()), "effect-*");
        assert_eq!(pool_name("gateway-0".into()), "gateway-*");
        assert_eq!(pool_name("effect-commit".into()), "effect-commit");
        assert_eq!(pool_name("fetch-AGGREGATE".into()), "fetch-AGGREGATE");
        assert_eq!(pool_name("runner".into()), "runner");
    }

    /// Runs `work` on a thread named `name` and takes `sample` once the work is done,
    /// while the thread still lives.
    fn sampled_after<T>(name: &str, work: fn(), sample: impl FnOnce() -> T) -> T {
        let (worked, done) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let worker = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                work();
                let _ = worked.0.send(());
                let _ = done.1.recv();
            })
            .expect("spawned");
        worked.1.recv().expect("the worker worked");
        let sampled = sample();
        let _ = done.0.send(());
        worker.join().expect("joined");
        sampled
    }

    #[test]
    fn a_thread_that_ran_less_than_a_clock_tick_still_shows_its_time() {
        // About 3 ms on the CPU: under one 10 ms tick of `stat`.
        let spin = || {
            let started = std::time::Instant::now();
            let mut x = 0u64;
            while started.elapsed() < Duration::from_millis(3) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        };
        let sample = sampled_after("spinner-3", spin, || threads_of("self"));
        let cpu = lookup(&sample, "spinner-*").expect("the worker is sampled");
        assert!(cpu >= Duration::from_millis(1), "{cpu:?}");
        assert_eq!(
            parse_schedstat("358103354 711679 97\n"),
            Some(Duration::from_nanos(358_103_354))
        );
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn a_status_file_gives_the_name_and_both_counts() {
        let status = "Name:\tstore-writer\nUmask:\t0022\nState:\tS (sleeping)\n\
                      voluntary_ctxt_switches:\t1500\nnonvoluntary_ctxt_switches:\t42\n";
        let (name, s) = parse_status(status).expect("parsed");
        assert_eq!(name, "store-writer");
        assert_eq!(
            s,
            Switches {
                voluntary: 1500,
                involuntary: 42
            }
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn switches_per_workflow_count_what_happened_between_the_samples() {
        let s = |v, i| Switches {
            voluntary: v,
            involuntary: i,
        };
        let before = vec![
            ("relay".to_string(), s(100, 10)),
            ("execute".into(), s(5, 5)),
        ];
        let after = vec![
            ("relay".to_string(), s(300, 30)),
            ("execute".into(), s(5, 5)),
            // Started between the samples: all of its switches count.
            ("effect-*".into(), s(600, 200)),
        ];
        let (per, by_thread) = switches_per_workflow(&before, after, 100);
        assert_eq!(
            per,
            PerWorkflow {
                voluntary: 8.0,
                involuntary: 2.2
            }
        );
        // Most first; a thread that did not switch is left out.
        assert_eq!(
            by_thread,
            vec![("effect-*".to_string(), 8.0), ("relay".to_string(), 2.2)]
        );
    }

    #[test]
    fn a_thread_that_slept_has_voluntary_switches_under_its_pool_name() {
        let sleep = || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let sample = sampled_after("switcher-7", sleep, || switches_of("self"));
        let worker = lookup(&sample, "switcher-*").expect("the worker is sampled");
        assert!(worker.voluntary >= 20, "{worker:?}");
    }
}
