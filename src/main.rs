#![forbid(unsafe_code)]

// mimalloc: the pipeline allocates JSON values in one thread and frees them in another;
// glibc malloc spends a large share of the CPU on exactly that (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(runner::cli::main_with(std::env::args_os()));
}
