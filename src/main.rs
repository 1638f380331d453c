//! The `specdyn` binary: parse, run, map errors to a one-paragraph message and an exit code.

mod cli;

fn main() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "internal error: {info}\nThis is a bug in specdyn, not in your input; please report it with the command you ran."
        );
    }));
    let code = match cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
