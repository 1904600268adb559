#![forbid(unsafe_code)]

// mimalloc: the pipeline allocates JSON values in one thread and frees them in another;
// glibc malloc spends a large share of the CPU on exactly that (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(runner::cli::main_with(&args));
}
