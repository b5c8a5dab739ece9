//! Steps 1 and 2 of a batch, as the core sees them: the [`Source`] claims the events that may
//! go now, and the relay makes sure their topics exist before it sends anything (see "A batch
//! deadline inside the lease" in the module docs of [`crate::relay`]).

use std::collections::{HashMap, HashSet};

use tokio::time::Instant;

use super::{Batch, Relay, RelayError, SendError, Source};
use crate::topics::TopicNames;

/// The events one batch claimed, grouped into per-aggregate chains.
#[doc(hidden)]
pub struct Claim<H> {
    pub(super) batch: Batch<H>,
    /// When the source claimed the events: the batch deadline counts from here.
    pub(super) started: Instant,
    /// Topics that could not be created just before this claim: their events fail.
    pub(super) topic_failures: HashMap<String, SendError>,
}

impl<H> Claim<H> {
    pub(super) fn claimed(&self) -> usize {
        self.batch.chains.iter().map(Vec::len).sum::<usize>() + self.batch.deferred
    }

    fn topics<'a>(&'a self, names: &'a TopicNames) -> impl Iterator<Item = String> + 'a {
        self.batch
            .chains
            .iter()
            .filter_map(|chain| chain.first())
            .map(|event| names.topic_for(&event.aggregatetype))
    }
}

impl<S: Source> Relay<S> {
    /// Steps 1 and 2: the source claims due events and keeps, per aggregate, those that may
    /// go now. `None` when there is nothing to do. Dropping the claim without [`Relay::mark`]
    /// is what a crash does: the events stay unpublished, for the next claim.
    ///
    /// A claim that needs a topic the relay has not created yet is dropped, the topic created
    /// outside it, and the source claims again (see "A batch deadline inside the lease").
    #[doc(hidden)] // A test hook: the steps one by one, to crash between them.
    pub async fn claim(&self) -> Result<Option<Claim<S::Held>>, RelayError> {
        let Some(claim) = self.claim_batch().await? else {
            return Ok(None);
        };
        let missing: HashSet<String> = claim
            .topics(&self.outlet.names)
            .filter(|topic| !self.outlet.topics.is_known(topic))
            .collect();
        if missing.is_empty() {
            return Ok(Some(claim));
        }
        drop(claim);
        let failed = self.outlet.create_topics(missing).await;
        let Some(mut claim) = self.claim_batch().await? else {
            return Ok(None);
        };
        claim.topic_failures = failed;
        Ok(Some(claim))
    }

    async fn claim_batch(&self) -> Result<Option<Claim<S::Held>>, RelayError> {
        let batch = self.source.claim(self.settings.batch_size).await?;
        Ok(batch.map(|batch| Claim {
            batch,
            started: Instant::now(),
            topic_failures: HashMap::new(),
        }))
    }
}
