//! `trainer`: the libtorch side of the project.
//!
//! ```text
//! cargo run -p trainer -- info --arch slowfast_8x8_r50
//! cargo run -p trainer -- demo data/videos/archery_paddlevideo_example.avi
//! cargo run --release -p trainer -- bench --pytorch ~/.cache/slowfast/pyref/bin/python
//! ```

mod cli;

fn main() -> std::process::ExitCode {
    runtime::exit_quietly_on_closed_stdout();
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
