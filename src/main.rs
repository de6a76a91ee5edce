use clap::Parser;
use gavel::config::{Cli, Sub};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` (its option enum, v3 numbering).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Commits allocator arena memory as it is used rather than up front: an idle server then holds
/// about 12 MB instead of 24 MB, which is what lets 10 000 idle connections fit the memory aim.
/// The option only counts before the allocator's first arena is reserved, which happens before
/// `main`, so this runs as an early constructor (priority 101, ahead of the default ones).
extern "C" fn lazy_arena_commit() {
    // SAFETY: writes one allocator option while the process is still single-threaded.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[used]
#[link_section = ".init_array.00101"]
static LAZY_ARENA_COMMIT: extern "C" fn() = lazy_arena_commit;

fn main() {
    // clap answers --help and --version itself (exit 0) and refuses what it cannot parse (exit 2).
    gavel::config::forget_empty_variables();
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::Token(args)) => match gavel::token::run(args) {
            Ok(token) => println!("{token}"),
            Err(e) => {
                eprintln!("gavel token: {e}");
                std::process::exit(2);
            }
        },
        Some(Sub::Migrate(args)) => std::process::exit(gavel::server::migrate(&args.database_url)),
        None => match cli.serve.into_config() {
            Ok(cfg) => std::process::exit(gavel::server::run(cfg)),
            Err(e) => {
                eprintln!("gavel: {e}");
                std::process::exit(2);
            }
        },
    }
}
