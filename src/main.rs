#![forbid(unsafe_code)]

// mimalloc: the pipeline allocates JSON values in one thread and frees them in another;
// glibc malloc spends a large share of the CPU on exactly that (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    keep_huge_pages_off();
    std::process::exit(runner::cli::main_with(std::env::args_os()));
}

/// Transparent huge pages off for this process and its children: each of the Runner's
/// ~100 threads would otherwise fault in a whole 2 MiB page for its first small
/// allocations (on hosts whose THP mode is `always`; in `madvise` mode mimalloc's
/// `no_thp` feature already keeps them off). Failure only costs memory, so it is
/// ignored (old kernels, seccomp filters).
#[cfg(target_os = "linux")]
fn keep_huge_pages_off() {
    let _ = nix::sys::prctl::set_thp_disable(true);
}

#[cfg(not(target_os = "linux"))]
fn keep_huge_pages_off() {}
