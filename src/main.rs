use clap::Parser;
use corecast::config::{Cli, Config};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("corecast: {line} (see corecast --help)");
            std::process::exit(2);
        }
    };
    let cfg = match Config::resolve(&cli) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("corecast: {e}");
            std::process::exit(2);
        }
    };
    if cli.print_config {
        print!("{}", cfg.to_toml());
        return;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    corecast::startup::check_limits(&cfg);
    if let Err(e) = corecast::shard::run(cfg) {
        log::error!("{e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}
