use clap::Args as ClapArgs;
use tch::{Device, nn};
use trainer::model::{Preset, SlowFast};

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_enum, default_value = "slowfast_8x8_r50")]
    arch: Preset,
    /// Square input size for the compute count.
    #[arg(long, default_value_t = 256)]
    size: i64,
    /// Fast pathway frames.
    #[arg(long, default_value_t = 32)]
    frames: i64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let config = a.arch.config();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config)?;
    let slow = [1, 3, a.frames / config.alpha, a.size, a.size];
    let fast = [1, 3, a.frames, a.size, a.size];
    let flops = model.flops(slow, fast)?;
    println!("arch: {:?}", a.arch);
    println!("parameters: {}", SlowFast::num_parameters(&vs));
    println!("input: slow {slow:?}, fast {fast:?}");
    println!(
        "GMACs: {:.2} (conv {:.2}, batch norm {:.2}, linear {:.4})",
        flops.gmacs(),
        flops.conv_macs as f64 / 1e9,
        2.0 * flops.bn_elements as f64 / 1e9,
        flops.linear_macs as f64 / 1e9
    );
    Ok(())
}
