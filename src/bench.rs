//! Load tool: placeholder until the benchmark slice lands.

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
