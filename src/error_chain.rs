//! `error_chain`: an error with all its causes on one line.
//!
//! hyper's errors say "client error (Connect)" at the top and "Connection refused" three
//! causes down; an operator reading a health-check or proxy failure needs the bottom.

pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_every_cause() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(
            error_chain(&outer),
            "Connection refused: Connection refused"
        );
    }
}
