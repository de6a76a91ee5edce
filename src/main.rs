use gavel::config::{help, Command, Config};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match Config::from_args(&args, |name| std::env::var(name).ok()) {
        Ok(Command::Help) => print!("{}", help()),
        Ok(Command::Serve(cfg)) => std::process::exit(gavel::server::run(cfg)),
        Err(e) => {
            eprintln!("gavel: {e}");
            std::process::exit(2);
        }
    }
}
