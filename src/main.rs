// Temporary launcher until the CLI branch lands.
#[tokio::main]
async fn main() {
    let config = kamal_proxy::daemon::RunConfig {
        http_port: std::env::var("HTTP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080),
        https_port: 443,
        metrics_port: None,
        debug: false,
        bind: vec!["127.0.0.1".parse().unwrap()],
        bus: std::env::var("BUS").map(|b| kamal_proxy::control::BusChoice::parse(&b).unwrap()).unwrap_or(kamal_proxy::control::BusChoice::None),
    };
    if let Err(e) = kamal_proxy::daemon::run(config).await {
        eprintln!("Error: {e}");
        std::process::exit(1);
    }
}
