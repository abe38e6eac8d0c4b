//! The `dipbench` command line. `dipbench --help` lists the commands; each lives in its own
//! module under `commands/` with its arguments beside its handler.

mod args;
mod commands;

use std::io::Write as _;

use clap::Parser;

/// burn allocates a fresh buffer for most tensor ops; mimalloc reuses freed pages where the system
/// allocator returns multi-megabyte buffers to the OS and page-faults them back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tells mimalloc never to return freed memory to the OS. By default it purges freed pages after
/// 10 ms, so every large temporary of the next network pass was faulted back in and zeroed by
/// the kernel: 27 % of a DPS step's time went to `clear_page_erms` in a profile. Kept, the pages
/// are reused and the resident size stays at the peak of the working set. (`MIMALLOC_PURGE_DELAY`
/// in the environment is read before `main`; this overrides it.)
fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v2 and v3 alike); the bindings leave
    // the options unnamed on purpose and take the numbers.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: called once at the start of `main`, before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Whether errors should carry a backtrace: `--debug` or `DIPBENCH_BACKTRACE=1`. A user's
/// `RUST_BACKTRACE` (often set globally) does not turn them on: a refusal is a message, not a
/// crash.
fn backtraces_wanted() -> bool {
    std::env::args().any(|a| a == "--debug") || std::env::var("DIPBENCH_BACKTRACE").is_ok_and(|v| v != "0" && !v.is_empty())
}

/// Prints `err` and its chain of causes, one per line, and the backtrace when one was captured.
fn report(err: &anyhow::Error, backtrace: bool) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
    if backtrace {
        let _ = writeln!(stderr, "\nStack backtrace:\n{}", err.backtrace());
    }
}

fn main() {
    keep_freed_memory();
    let backtrace = backtraces_wanted();
    // anyhow captures a backtrace per error when RUST_LIB_BACKTRACE (or RUST_BACKTRACE) says so.
    // SAFETY: set before any other thread exists.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", if backtrace { "1" } else { "0" }) };
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    dipbench::backend::configure_gpu_caches();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = args::Cli::parse();
    match commands::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            report(&err, backtrace);
            std::process::exit(1);
        }
    }
}
