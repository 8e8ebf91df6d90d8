//! Keeping the attached container's answers for target names across daemon restarts
//! (`state::ResolvedNames`): restored before traffic is served, saved whenever an answer
//! changes, off the request path, and pruned to the names some deployed target still has
//! (or that were resolved lately: a deploy resolves its targets before they are deployed).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::router::Router;
use crate::service::target_resolver::TargetResolver;
use crate::state::ResolvedNames;

/// Gives `resolver` the answers saved before the last stop.
pub fn restore(resolver: &TargetResolver, names: &ResolvedNames) {
    match names.load() {
        Ok(answers) if answers.is_empty() => {}
        Ok(answers) => {
            tracing::info!(path = %names.path().display(), names = answers.len(), "Restored the addresses of container targets");
            resolver.remember(answers);
        }
        Err(error) => {
            tracing::warn!(error = %error, "Cannot restore the addresses of container targets; the attached container will answer again")
        }
    }
}

/// Saves the answers each time they change, until `shutdown`.
pub async fn keep(
    resolver: Arc<TargetResolver>,
    names: ResolvedNames,
    router: Arc<Router>,
    shutdown: CancellationToken,
) {
    let names = Arc::new(names);
    loop {
        tokio::select! {
            () = resolver.answers_changed() => {}
            () = shutdown.cancelled() => return,
        }
        let deployed = router.target_hosts();
        let answers = resolver.answers_to_keep(|name| deployed.contains(name));
        let names = Arc::clone(&names);
        let saved = tokio::task::spawn_blocking(move || names.save(&answers)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "Cannot save the addresses of container targets")
            }
            Err(error) => {
                tracing::warn!(error = %error, "Cannot save the addresses of container targets")
            }
        }
    }
}
