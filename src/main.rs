use clap::Parser;
use corecast::config::{Cli, Config};

/// One policy for panics: any panicking thread (a core, the Redis bridge, a webhook thread)
/// takes the whole process down at once, so that a supervisor restarts it and clients reconnect
/// elsewhere — never a half-alive node whose other cores keep accepting.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("corecast: a thread panicked: aborting so that the supervisor restarts this node");
        std::process::abort();
    }));
}

fn main() {
    exit_on_panic();
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
    corecast::check_limits(&cfg);
    if let Err(e) = corecast::run(cfg) {
        log::error!("{e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}
