use std::path::PathBuf;

use clap::Args as ClapArgs;
use trainer::data::{Source, read_list};
use trainer::recipe::ListFormat;

#[derive(ClapArgs)]
pub struct Args {
    /// Video list (`path label` lines, or CSV with a header).
    #[arg(long)]
    list: PathBuf,
    /// Prefix of the list's relative paths.
    #[arg(long)]
    root: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "path-label")]
    format: Format,
    /// Labels must be below this.
    #[arg(long, default_value_t = usize::MAX)]
    num_classes: usize,
    /// Where to write the unreadable videos (`path<TAB>reason`).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    PathLabel,
    Csv,
}

/// Opens every video of a list up front (container, video stream, first
/// frame, duration), so bad files are known before a long run.
pub fn run(a: Args) -> anyhow::Result<()> {
    let format = match a.format {
        Format::PathLabel => ListFormat::PathLabel,
        Format::Csv => ListFormat::Csv,
    };
    let samples = read_list(&a.list, a.root.as_deref(), format, a.num_classes)?;
    let source = Source::List(samples);
    let n = source.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let bad = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..a.workers.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    if let Err(e) = source.check(i)
                        && let Ok(mut b) = bad.lock()
                    {
                        b.push((i, e));
                    }
                }
            });
        }
    });
    let mut bad = bad.into_inner().map_err(|_| anyhow::anyhow!("a checking thread panicked"))?;
    bad.sort_by_key(|(i, _)| *i);
    let text: String = bad.iter().map(|(_, e)| format!("{}\t{}\n", e.name, e.why)).collect();
    std::fs::write(&a.out, text).map_err(|e| anyhow::anyhow!("{}: {e}", a.out.display()))?;
    println!("{} of {n} videos readable, {} unreadable listed in {}", n - bad.len(), bad.len(), a.out.display());
    for (_, e) in bad.iter().take(10) {
        println!("  {e}");
    }
    if n > 0 && bad.len() == n {
        anyhow::bail!("none of the {n} videos of {} is readable (reasons in {})", a.list.display(), a.out.display());
    }
    Ok(())
}
